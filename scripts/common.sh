# Shell functions the scripts share; sourced, not run. Progress goes to stderr, so that a
# script's stdout carries only its answer (scripts/postgres.sh and scripts/package.sh print a
# path).

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Installs those of the given Debian packages that are missing.
ensure_packages() {
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if ((${#missing[@]})); then
    say "Installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# Copies the PostgreSQL build of pg_config $1 (major $2) into the scratch root $3, laid out as
# Debian's and the PGDG's postgresql-MAJOR lay it out (/usr/lib/postgresql/MAJOR/{bin,lib},
# /usr/share/postgresql/MAJOR), without any pg_barrier of its own: a server that a package of
# pg_barrier can be installed into without touching the real installation.
scratch_server() {
  local pg_config=$1 major=$2 root=$3 server
  server=$root/usr/lib/postgresql/$major
  mkdir -p "$server" "$root/usr/share/postgresql"
  cp -a "$("$pg_config" --bindir)" "$server/bin"
  cp -a "$("$pg_config" --pkglibdir)" "$server/lib"
  cp -a "$("$pg_config" --sharedir)" "$root/usr/share/postgresql/$major"
  # A relocatable build looks for its share directory beside bin/.
  [[ -e "$server/share" ]] || ln -s "../../../share/postgresql/$major" "$server/share"
  rm -f "$server/lib/pg_barrier.so" "$root/usr/share/postgresql/$major/extension/pg_barrier"*
}

# scratch_server, then the Rust build that `cargo pgrx package --out-dir $4` made and the SQL
# edition's scripts installed into it: a server of its own for a benchmark, whose library no
# other checkout's `cargo pgrx install` can replace while it runs.
scratch_server_with_build() {
  local pg_config=$1 major=$2 root=$3 build=$4 server
  server=$root/usr/lib/postgresql/$major
  scratch_server "$pg_config" "$major" "$root"
  install -m 644 "$build$("$pg_config" --pkglibdir)/pg_barrier.so" "$server/lib/"
  install -m 644 "$build$("$pg_config" --sharedir)"/extension/pg_barrier* "$server/share/extension/"
  scripts/install-sql-edition.sh --scripts-only "$server/share/extension" >/dev/null
}
