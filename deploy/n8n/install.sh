#!/usr/bin/env bash
# Installs n8n from the npm registry into a cache folder outside the repository
# (COPINES_N8N_DIR, default ~/.cache/copines-n8n); a second run with the same version does nothing.
#
# Two things keep a plain `npm install n8n` from working on a machine that reaches only the
# registry: a dependency's native build (the Kafka node's librdkafka) downloads its sources from
# elsewhere, so install scripts are skipped; and SQLite, the one native module n8n needs here, is
# then built from source against the local Node.js headers. n8n's nodes fetch `xlsx` from outside
# the registry: the override maps it to the registry's build. 2.8.4 is the last release that runs
# on Node.js 20.
set -euo pipefail

N8N_VERSION="${N8N_VERSION:-2.8.4}"
DIR="${COPINES_N8N_DIR:-$HOME/.cache/copines-n8n}"
BIN="$DIR/node_modules/.bin/n8n"

if [ -x "$BIN" ] && [ "$(cat "$DIR/.installed" 2>/dev/null)" = "$N8N_VERSION" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "install.sh: npm is needed (Node.js 20+)" >&2; exit 1; }

mkdir -p "$DIR"
cat > "$DIR/package.json" <<JSON
{
  "name": "copines-n8n",
  "private": true,
  "dependencies": { "n8n": "$N8N_VERSION" },
  "overrides": { "xlsx": "npm:@e965/xlsx@0.20.3" }
}
JSON
cd "$DIR"
rm -f .installed
npm install --no-audit --no-fund --loglevel=error --ignore-scripts
nodedir=()
[ -f /usr/include/node/node_version.h ] && nodedir=(--nodedir=/usr)
npm rebuild sqlite3 --build-from-source "${nodedir[@]}" --loglevel=error
echo "$N8N_VERSION" > .installed
echo "n8n $N8N_VERSION installed in $DIR"
