#!/usr/bin/env bash
# Installs what building and testing pg_barrier needs on Debian 12, idempotently:
# PostgreSQL 15 with its server headers, clang for bindgen, cargo-pgrx 0.18.0, `cargo pgrx init`.
# Sourced by the other scripts, as root; `use_postgres` adds another PostgreSQL build.
set -euo pipefail

PG_MAJOR=15
PGRX_VERSION=0.18.0
PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
PACKAGES=(
  build-essential ca-certificates pkg-config libssl-dev clang libclang-dev sudo
  "postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR"
)

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ensure_packages "${PACKAGES[@]}"

# rustup's default location, for shells (sudo, CI) whose PATH does not carry it.
if ! command -v cargo >/dev/null && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null; then
  echo "cargo is not on PATH: install the Rust toolchain (rustup) first" >&2
  exit 1
fi

if [[ "$(cargo pgrx --version 2>/dev/null)" != "cargo-pgrx $PGRX_VERSION" ]]; then
  say "Installing cargo-pgrx $PGRX_VERSION (a few minutes, once per machine)"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --quiet
fi

pgrx_config="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
if ! grep -qs "pg$PG_MAJOR = \"$PG_CONFIG\"" "$pgrx_config"; then
  say "Pointing cargo-pgrx at the system PostgreSQL $PG_MAJOR"
  cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG" >/dev/null
fi

# Gets the PostgreSQL build $1 (15, 16, 17, 18 or 15-cassert, see scripts/postgres.sh) and
# points cargo-pgrx at it. Sets BUILD_PG_CONFIG, BUILD_MAJOR and BUILD_ENV, the variables that
# `env "${BUILD_ENV[@]}" cargo ...` needs to build and test against it: its tools first on the
# PATH and, for the assertion build (a second PostgreSQL 15), a pgrx home and a target directory
# of its own, so that the two 15s never overwrite each other's bindings.
use_postgres() {
  local build=$1 home
  BUILD_PG_CONFIG=$(scripts/postgres.sh "$build" | tail -1)
  BUILD_MAJOR=${build%%-*}
  BUILD_ENV=(PATH="$(dirname "$BUILD_PG_CONFIG"):$PATH")
  if [[ $build == *-* ]]; then
    home="${PG_BARRIER_CACHE:-/var/cache/pg_barrier}/pgrx-$build"
    mkdir -p "$home"
    printf '[configs]\npg%s = "%s"\n' "$BUILD_MAJOR" "$BUILD_PG_CONFIG" >"$home/config.toml"
    BUILD_ENV+=(PGRX_HOME="$home" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/$build")
  else
    home=${PGRX_HOME:-$HOME/.pgrx}
    if ! grep -qsx "pg$build = \"$BUILD_PG_CONFIG\"" "$home/config.toml"; then
      sed -i "/^pg$build = /d" "$home/config.toml"
      echo "pg$build = \"$BUILD_PG_CONFIG\"" >>"$home/config.toml"
    fi
  fi
}
