#!/usr/bin/env bash
# Usage: .ci/oldest-peers.sh <command> [args ...]   e.g. .ci/oldest-peers.sh npm test
# Runs <command> in a copy of the checkout whose node_modules holds the oldest version of every
# peerDependencies range of package.json, and the Nest packages the suites use beside @nestjs/core
# at their release of core's floor: the floors the README states are then tested, not only the
# newest versions package-lock.json installs. The checkout's own node_modules is
# copied, never changed (the other CI lines share it); the copy is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -gt 0 ] || { echo "usage: $0 <command> [args ...]" >&2; exit 2; }

# Released with @nestjs/core and kept at its version line by users (and by the suites' imports).
companions=(@nestjs/platform-express @nestjs/platform-fastify @nestjs/platform-ws @nestjs/microservices @nestjs/websockets @nestjs/testing)

# Each peer at the oldest release of its range (ranges are ^x.y.z); each companion at its oldest
# release not older than @nestjs/core's floor, or its newest of that major when it has none (some are
# not released with every minor). One registry look-up per package, for its list of versions.
# A companion that is also a peer (an optional one) is installed once, as a companion.
specs=()
for name in $(node -p 'Object.keys(require("./package.json").peerDependencies).filter((name) => !process.argv.slice(1).includes(name)).join(" ")' "${companions[@]}") "${companions[@]}"; do
  specs+=("$(npm view "$name" versions --json | node -e '
    const [name, companion] = process.argv.slice(1);
    const peers = require("./package.json").peerDependencies;
    const range = peers[companion === "1" ? "@nestjs/core" : name];
    const match = /^\^(\d+)\.(\d+)\.(\d+)$/.exec(range);
    if (!match) throw new Error(`oldest-peers: ${name}: cannot read the range ${range} (^x.y.z expected)`);
    const floor = match.slice(1).map(Number);
    const key = (v) => v.split(".").map(Number);
    const cmp = (a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
    // Caret: the same major (the same minor below 1.0); prereleases never.
    const inLine = (v) => v[0] === floor[0] && (floor[0] > 0 || v[1] === floor[1]);
    const versions = [].concat(JSON.parse(require("fs").readFileSync(0, "utf8")))
      .filter((v) => !v.includes("-")).map(key).filter(inLine).sort(cmp);
    const pick = versions.find((v) => cmp(v, floor) >= 0) ?? (companion === "1" ? versions.at(-1) : undefined);
    if (!pick) throw new Error(`oldest-peers: no release of ${name} in ${range}`);
    console.log(`${name}@${pick.join(".")}`);
  ' "$name" "$([[ " ${companions[*]} " == *" $name "* ]] && echo 1 || echo 0)")")
done

copy="$(mktemp -d "${TMPDIR:-/tmp}/npp-oldest-peers.XXXXXX")"
trap 'rm -rf "$copy"' EXIT
# The working tree as it is (uncommitted changes included), node_modules too; not .git.
tar -c --exclude=./.git . | tar -x -C "$copy"
cd "$copy"
echo "oldest-peers: installing ${specs[*]} in $copy"
# Without --legacy-peer-deps: a dev package that needs more than a floor fails the line, loudly.
npm install --no-save --no-audit --no-fund "${specs[@]}" >&2

# What Node resolves from the copy must be the floor, not a newer copy hoisted elsewhere.
node -e '
  const wrong = process.argv.slice(1).flatMap((spec) => {
    const at = spec.lastIndexOf("@");
    const [name, want] = [spec.slice(0, at), spec.slice(at + 1)];
    const got = require(`./node_modules/${name}/package.json`).version;
    return got === want ? [] : [`${name} ${got} (wanted ${want})`];
  });
  if (wrong.length) { console.error(`oldest-peers: installed ${wrong.join(", ")}`); process.exit(1); }
' "${specs[@]}"

"$@"
