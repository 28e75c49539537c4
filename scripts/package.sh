#!/usr/bin/env bash
# Builds a Debian package of the Rust build for one PostgreSQL major and prints its path as its
# last line:
#
#   scripts/package.sh 15|16|17|18 [--check]
#
# The package, postgresql-MAJOR-pg-barrier, puts its files where Debian's and the PostgreSQL
# apt repository's (apt.postgresql.org) postgresql-MAJOR look for a major's extensions:
# /usr/lib/postgresql/MAJOR/lib/pg_barrier.so and /usr/share/postgresql/MAJOR/extension/, and
# depends on postgresql-MAJOR. It is built against the PostgreSQL that scripts/postgres.sh gets.
#
# --check then installs it with dpkg into a scratch root holding a PostgreSQL of that major laid
# out the same way, starts that server with the library preloaded, and runs the README's first
# example against it.
set -euo pipefail
shopt -s inherit_errexit
if [[ $EUID -ne 0 ]]; then
  exec sudo --preserve-env=PATH,HOME,CARGO_HOME,RUSTUP_HOME,CARGO_TARGET_DIR,PG_BARRIER_CACHE \
    "$(realpath "$0")" "$@"
fi
cd "$(dirname "$0")/.."
major=${1:?usage: scripts/package.sh 15|16|17|18 [--check]}
check=${2:-}
case $major in 15 | 16 | 17 | 18) ;; *)
  echo "scripts/package.sh: no package for '$major' (15, 16, 17 or 18)" >&2
  exit 2
  ;;
esac
source scripts/setup.sh >&2
ensure_packages binutils

pg_config=$(scripts/postgres.sh "$major" | tail -1)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
name=postgresql-$major-pg-barrier
arch=$(dpkg --print-architecture)
work=target/package/pg$major
deb=$PWD/target/package/${name}_$version-1_$arch.deb

say "Building the Rust build for PostgreSQL $major (release)"
rm -rf "$work"
cargo pgrx package --pg-config "$pg_config" --no-default-features --features "pg$major" \
  --out-dir "$work/build" >&2

# pgrx lays the files out under the build's own directories: move them to the package's.
root=$work/root
lib=$root/usr/lib/postgresql/$major/lib
extension=$root/usr/share/postgresql/$major/extension
install -d "$lib" "$extension" "$root/DEBIAN" "$root/usr/share/doc/$name"
install -m 644 "$work/build$("$pg_config" --pkglibdir)/pg_barrier.so" "$lib/"
install -m 644 "$work/build$("$pg_config" --sharedir)"/extension/pg_barrier* "$extension/"
install -m 644 README.md "$root/usr/share/doc/$name/README.md"
install -d "$root/usr/share/doc/$name/docs"
install -m 644 docs/*.md "$root/usr/share/doc/$name/docs/"

# The newest glibc symbol version the library uses is the oldest libc6 it runs with.
glibc=$(objdump -T "$lib/pg_barrier.so" | grep -o 'GLIBC_[0-9.]*' | cut -d_ -f2 | sort -V | tail -1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: $name
Version: $version-1
Architecture: $arch
Maintainer: pg_barrier developers <pg_barrier@users.noreply.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: postgresql-$major, libc6 (>= $glibc)
Section: database
Priority: optional
Description: fan-in barriers inside PostgreSQL $major (pg_barrier $version)
 pg_barrier moves fan-in coordination into the database: a job splits into N
 tasks, each reports its result with barrier_decr, and exactly one reporter
 learns that the barrier is complete, with every result in task order, plus a
 NOTIFY. This is the Rust build (a shared library) for PostgreSQL $major, with
 the scripts of the SQL edition that it can switch to in place.
CONTROL
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null

if [[ $check == --check ]]; then
  say "Installing $deb into a scratch PostgreSQL $major and running the README's example"
  scratch=$(mktemp -d /tmp/pg_barrier-package-XXXXXX)
  chmod 755 "$scratch"
  stop() {
    runuser -u postgres -- "$scratch/usr/lib/postgresql/$major/bin/pg_ctl" -D "$scratch/data" \
      -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$scratch"
  }
  trap stop EXIT
  scratch_server "$pg_config" "$major" "$scratch"
  server=$scratch/usr/lib/postgresql/$major

  mkdir -p "$scratch/var/lib/dpkg/info" "$scratch/var/lib/dpkg/updates"
  touch "$scratch/var/lib/dpkg/status"
  # The scratch root's package database knows no postgresql-MAJOR: the server is there,
  # copied, not installed, so that one dependency is waived (and checked by name below).
  dpkg --root="$scratch" --force-depends -i "$deb" >&2
  dpkg-deb -f "$deb" Depends | grep -q "^postgresql-$major," ||
    { echo "$deb does not depend on postgresql-$major" >&2; exit 1; }

  install -d -o postgres -g postgres "$scratch/data" "$scratch/socket"
  runuser -u postgres -- "$server/bin/initdb" -D "$scratch/data" --auth=trust -U postgres >/dev/null
  runuser -u postgres -- "$server/bin/pg_ctl" -D "$scratch/data" -l "$scratch/socket/log" -w \
    -o "-c listen_addresses='' -k $scratch/socket -c shared_preload_libraries=pg_barrier" \
    start >/dev/null || { cat "$scratch/socket/log" >&2; exit 1; }
  # The README's first SQL block, as a reader would paste it.
  example=$(awk '/^```sql$/ { n++; next } /^```$/ && n == 1 { exit } n == 1' README.md)
  answer=$(psql -h "$scratch/socket" -U postgres -d postgres -v ON_ERROR_STOP=1 -X -A -t \
    -F '|' -c "$example" 2>&1 | tail -1) || { echo "$answer" >&2; exit 1; }
  expected='complete|0|[{"rows": 10}, {"rows": 12}, {"rows": 7}]|{"task": "merge"}|{}|[]|{}'
  if [[ $answer != "$expected" ]]; then
    printf 'the example answered\n  %s\nexpected\n  %s\n' "$answer" "$expected" >&2
    exit 1
  fi
  installed=$(psql -h "$scratch/socket" -U postgres -d postgres -X -A -t \
    -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_barrier'")
  [[ $installed == "$version" ]] || { echo "installed $installed, expected $version" >&2; exit 1; }
  say "PostgreSQL $major: the package installs and the example answers: $answer"
fi
echo "$deb"
