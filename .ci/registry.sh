# Sourced by .ci/node-line.sh and .ci/pg-major.sh: what they share about the npm registry.

# newest_version <tool> <package> <major> [<suffix regex>]: prints the newest <major>.x.y of <package>
# on the registry (with the suffix allowed after it, e.g. '-beta\.[0-9]+'). sort -V because the
# registry lists versions by publish order, not by version.
newest_version() {
  local tool="$1" package="$2" major="$3" suffix="${4:-}" versions version
  [[ "$major" =~ ^[0-9]+$ ]] || { echo "$tool: major must be a number, got '$major'" >&2; return 2; }
  versions="$(npm view "$package" versions --json)" ||
    { echo "$tool: could not list $package versions from the npm registry" >&2; return 1; }
  version="$(grep -oE "\"$major\.[0-9]+\.[0-9]+($suffix)?\"" <<<"$versions" | tr -d '"' | sort -V | tail -n 1 || true)"
  [ -n "$version" ] || { echo "$tool: the npm registry has no $package $major.x" >&2; return 1; }
  echo "$version"
}

# cache_dir <name>: where downloads of that kind are kept between runs.
cache_dir() {
  echo "${XDG_CACHE_HOME:-$HOME/.cache}/nestjs-pg-pool/$1"
}
