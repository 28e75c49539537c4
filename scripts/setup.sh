#!/usr/bin/env bash
# Installs what building and testing pg_barrier needs on Debian 12, idempotently:
# PostgreSQL 15 with its server headers, clang for bindgen, cargo-pgrx 0.18.0, `cargo pgrx init`.
# Sourced by scripts/demo.sh and scripts/test.sh; runs as root (re-executed through sudo if not).
set -euo pipefail

PG_MAJOR=15
PGRX_VERSION=0.18.0
PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
PACKAGES=(
  build-essential ca-certificates pkg-config libssl-dev clang libclang-dev sudo
  "postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR"
)

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# Installs those of the given Debian packages that are missing.
ensure_packages() {
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if ((${#missing[@]})); then
    say "Installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

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
