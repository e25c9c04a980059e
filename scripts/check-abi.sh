#!/usr/bin/env bash
# Rebuilds the BPF objects (the datapath's and the bench's) and the wasm codec
# into a temporary directory and fails when any byte differs from the committed
# files (or a file is missing on either side): the committed artifacts must be
# what the sources build.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

bash "$root/scripts/build-abi.sh" "$tmp" >/dev/null

status=0
for dir in bpf/dist bench/datapath-micro/dist; do
  for f in "$tmp/$dir"/*.o "$root/$dir"/*.o; do
    rel="$dir/$(basename "$f")"
    if ! cmp -s "$tmp/$rel" "$root/$rel"; then
      echo "check-abi: $rel differs from a fresh build (run npm run build:abi and commit)" >&2
      status=1
    fi
  done
done
if ! cmp -s "$tmp/wasm/pkg/weft_codec_bg.wasm" "$root/wasm/pkg/weft_codec_bg.wasm"; then
  echo "check-abi: wasm/pkg/weft_codec_bg.wasm differs from a fresh build (run npm run build:abi and commit)" >&2
  status=1
fi
[ "$status" -eq 0 ] && echo "check-abi: committed BPF objects and wasm match a fresh build"
exit "$status"
