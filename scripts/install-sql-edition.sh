#!/usr/bin/env bash
# Installs the SQL edition's control file and scripts into an extension directory: the one of the
# `pg_config` on the PATH, or DIR. Only the SQL edition's own scripts (its install scripts and the
# updates between its releases) are copied, not those that switch from and to the Rust build.
# Then, in a database: CREATE EXTENSION pg_barrier;
#
#   scripts/install-sql-edition.sh [--scripts-only] [DIR]
#
# Where the Rust build is installed, its control file stays: --scripts-only adds the SQL
# edition's scripts beside it (CREATE EXTENSION pg_barrier VERSION '<version>-sql' then works);
# without it the script refuses to replace that control file.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts_only=false
if [[ ${1:-} == --scripts-only ]]; then
  scripts_only=true
  shift
fi
dir=${1:-"$(pg_config --sharedir)/extension"}
if ! $scripts_only; then
  if grep -qs '^module_pathname' "$dir/pg_barrier.control"; then
    echo "$dir has the Rust build of pg_barrier: its control file stays. Use --scripts-only to add" >&2
    echo "the SQL edition's scripts beside it, or switch a database with ALTER EXTENSION UPDATE." >&2
    exit 1
  fi
  install -m 644 sql-edition/pg_barrier.control "$dir/"
fi
for script in sql/pg_barrier--*.sql; do
  versions=${script#sql/pg_barrier--}
  versions=${versions%.sql}
  # Every version the script names must be one of the SQL edition's.
  ours=true
  for version in ${versions//--/ }; do
    [[ $version == *-sql ]] || ours=false
  done
  if $ours; then
    install -m 644 "$script" "$dir/"
  fi
done
echo "installed the SQL edition $(sed -n "s/^default_version = '\(.*\)'$/\1/p" sql-edition/pg_barrier.control) into $dir"
