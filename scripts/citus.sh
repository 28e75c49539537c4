#!/usr/bin/env bash
# Builds Citus from its release source and installs it into a PostgreSQL installation, for the
# multi-node tests (tests/citus.rs) and benches/citus.sh. Nothing of Citus is part of pg_barrier.
#
#   scripts/citus.sh [PG_CONFIG]     default: Debian's PostgreSQL 15
#
# The source: $CITUS_SRC (a release tarball, or an unpacked source tree), else the tarball vendored
# beside the checkout, ../shared/vendor/citus-13.2.2.tar.xz. Citus 13.2 is the newest line for
# PostgreSQL 15 (it supports 15 to 17). The build is cached in
# $PG_BARRIER_CACHE/citus-<source>-pg<server version> (default cache /var/cache/pg_barrier): a
# second run only installs it again, in seconds.
#
# One change is made to the source, and only where it is needed: PostgreSQL 15.20 and later
# export have_createdb_privilege(), which Citus 13.2.2 defines for itself on 15; the copy is
# removed so that the two do not clash (they do the same).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

pg_config=${1:-/usr/lib/postgresql/15/bin/pg_config}
source=${CITUS_SRC:-../shared/vendor/citus-13.2.2.tar.xz}
if [[ ! -e $source ]]; then
  echo "scripts/citus.sh: no Citus source at $source; set CITUS_SRC to a Citus release tarball or" >&2
  echo "source tree (13.2.x for PostgreSQL 15)" >&2
  exit 1
fi
source=$(realpath "$source")

ensure_packages build-essential liblz4-dev libzstd-dev libkrb5-dev libssl-dev libxml2-dev \
  libxslt1-dev libselinux1-dev libpam0g-dev libreadline-dev zlib1g-dev
[[ $pg_config != /usr/lib/postgresql/15/* ]] || ensure_packages postgresql-server-dev-15

server=$("$pg_config" --version | awk '{print $2}')
name=$(basename "$source")
name=${name%.tar.xz}
build=${PG_BARRIER_CACHE:-/var/cache/pg_barrier}/$name-pg$server
if [[ ! -e $build/.built ]]; then
  say "Building Citus ($name) for PostgreSQL $server in $build"
  rm -rf "$build"
  mkdir -p "$build"
  if [[ -d $source ]]; then
    cp -a "$source/." "$build/"
  else
    tar -xJf "$source" -C "$build" --strip-components=1
  fi
  server_include=$("$pg_config" --includedir-server)
  if grep -q 'extern bool have_createdb_privilege' "$server_include/commands/dbcommands.h"; then
    perl -0pi -e 's/static inline bool\nhave_createdb_privilege\(void\)\n\{.*?\n\}\n//s' \
      "$build/src/include/pg_version_compat.h"
  fi
  (
    cd "$build"
    ./configure PG_CONFIG="$pg_config" --without-libcurl >configure.log 2>&1 ||
      { tail -20 configure.log >&2; exit 1; }
    make -j"$(nproc)" with_llvm=no >make.log 2>&1 || { grep -m5 'error' make.log >&2; exit 1; }
  )
  touch "$build/.built"
fi
say "Installing Citus into $("$pg_config" --pkglibdir)"
make -C "$build" install with_llvm=no >/dev/null
