#!/usr/bin/env bash
# Builds the datapath ABI twice from bpf/include: the BPF objects (bpf/dist/)
# and the wasm codec (wasm/pkg/weft_codec_bg.wasm), plus the bench-only BPF
# objects of bench/datapath-micro (bench/datapath-micro/dist/), which are no
# part of the datapath the agent loads. All are committed, so
# the output must be byte-for-byte reproducible: paths are mapped to "." in
# debug info and the toolchain is pinned by name (clang-14, wasm-ld-14).
#   scripts/build-abi.sh            build into the repository
#   scripts/build-abi.sh OUT_DIR    build into OUT_DIR/{bpf/dist,bench/datapath-micro/dist,wasm/pkg}
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root}"
cd "$root"

CLANG="${CLANG:-clang-14}"
WASM_LD="${WASM_LD:-wasm-ld-14}"
for tool in "$CLANG" "$WASM_LD"; do
  command -v "$tool" >/dev/null || { echo "build-abi: $tool not found (apt-get install clang-14 lld-14)" >&2; exit 1; }
done
# The kernel UAPI headers' asm/ directory is per-architecture on Debian.
ASM_INC="/usr/include/$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)"
[ -d /usr/include/bpf ] || { echo "build-abi: /usr/include/bpf missing (apt-get install libbpf-dev)" >&2; exit 1; }

# Relative source paths plus the prefix map keep the clone's location out of
# DWARF and BTF, so two clones build identical bytes.
REPRO=(-ffile-prefix-map="$root"=. -fdebug-prefix-map="$root"=. -fno-ident)
WARN=(-Wall -Wextra -Werror -Wno-unused-parameter)

mkdir -p "$out/bpf/dist" "$out/bench/datapath-micro/dist" "$out/wasm/pkg"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

for src in bpf/*.bpf.c bench/datapath-micro/*.bpf.c; do
  name="$(basename "$src" .bpf.c)"
  "$CLANG" -O2 -g -target bpf "${REPRO[@]}" "${WARN[@]}" -I bpf/include -I "$ASM_INC" \
    -c "$src" -o "$out/$(dirname "$src")/dist/$name.o"
done

"$CLANG" --target=wasm32 -nostdlib -ffreestanding -O2 "${REPRO[@]}" "${WARN[@]}" -I bpf/include \
  -c wasm/src/codec.c -o "$tmp/codec.o"
"$WASM_LD" --no-entry --strip-all -o "$out/wasm/pkg/weft_codec_bg.wasm" "$tmp/codec.o"

echo "build-abi: built $(ls "$out"/bpf/dist/*.o | wc -l) BPF objects, $(ls "$out"/bench/datapath-micro/dist/*.o | wc -l) bench BPF object(s) and the wasm codec into $out"
