#!/usr/bin/env bash
# Packs the package as npm would publish it, installs the tarball in a new project beside Nest 12
# and pg, compiles a minimal application against it (.ci/consumer/app.ts) and runs one request
# through @InjectConnection: a broken exports map or a file missing from the package fails here.
# The database: DATABASE_URL, else the PG* variables' server (default 127.0.0.1:5432 as postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
project="$PWD"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tarball="$(npm pack --silent --pack-destination "$work")"
app="$work/app"
mkdir "$app"
cp .ci/consumer/app.ts .ci/consumer/tsconfig.json "$app/"
cd "$app"
echo '{"private":true,"type":"module"}' >package.json
npm install --no-audit --no-fund --loglevel=error "$work/$tarball" \
  @nestjs/common@^12 @nestjs/core@^12 @nestjs/platform-express@^12 pg@^8 reflect-metadata rxjs @types/node @types/pg >&2
"$project/node_modules/.bin/tsc" -p tsconfig.json
PGHOST="${PGHOST:-127.0.0.1}" PGUSER="${PGUSER:-postgres}" PGDATABASE="${PGDATABASE:-postgres}" node app.js
