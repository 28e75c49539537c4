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
