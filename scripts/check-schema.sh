#!/usr/bin/env bash
# The install script of this version, as pgrx generates it, must equal the committed copy in
# sql/pg_barrier--<version>.sql: a change to the SQL surface is then a visible change in review,
# and released versions stay available as the starting point of upgrade tests.
# `--write` regenerates the committed copy (for a version that has not been released yet).
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
committed="sql/pg_barrier--$version.sql"
generated=$(mktemp)
trap 'rm -f "$generated"' EXIT

# Source locations (`-- src/api.rs:42`) move with every edit; they are not part of the surface.
cargo pgrx schema pg15 --out "$generated" >/dev/null 2>&1 ||
  { cargo pgrx schema pg15 --out "$generated"; exit 1; }
sed -i -E '/^-- [^ ]+\.rs:[0-9]+$/d' "$generated"

if [[ "${1:-}" == "--write" ]]; then
  cp "$generated" "$committed"
  chmod 644 "$committed"
  echo "wrote $committed"
elif ! diff -u "$committed" "$generated"; then
  echo "The generated schema differs from $committed (above)." >&2
  echo "Unreleased version: run scripts/check-schema.sh --write. Released: bump the version and add an upgrade script." >&2
  exit 1
else
  echo "schema matches $committed"
fi
