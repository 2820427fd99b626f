#!/usr/bin/env bash
# Builds lilysay.wasm (WASI preview 1) from lilysay.c with Debian's clang, lld and wasi-libc
# (apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32; tools/bootstrap --wasm).
#
#   ./build.sh           writes lilysay.wasm
#   ./build.sh --check   builds into a temporary folder and fails unless the result is
#                        byte for byte the committed lilysay.wasm
#
# The module folder ships the built lilysay.wasm (its content hash pins it), so providers need no
# compiler; this script is how it was made, and the check proves it still is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
cc="${WASM_CC:-clang}"
flags=(--target=wasm32-wasi --sysroot=/usr -Os -Wall -Wextra -Werror -Wl,--strip-all)
case "${1:-}" in
  "")
    "$cc" "${flags[@]}" -o lilysay.wasm lilysay.c
    echo "built lilysay.wasm ($(wc -c <lilysay.wasm) bytes, sha256 $(sha256sum lilysay.wasm | cut -c1-64))"
    ;;
  --check)
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    "$cc" "${flags[@]}" -o "$tmp/lilysay.wasm" lilysay.c
    if ! cmp -s "$tmp/lilysay.wasm" lilysay.wasm; then
      echo "lilysay.wasm is not what lilysay.c builds to with $("$cc" --version | head -n1): run ./build.sh and commit it" >&2
      exit 1
    fi
    echo "lilysay.wasm matches its source"
    ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
