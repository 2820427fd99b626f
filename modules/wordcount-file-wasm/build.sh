#!/usr/bin/env bash
# Builds wordcount-file.wasm (WASI preview 1) from wordcount-file.c with Debian's clang, lld and wasi-libc
# (apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32; tools/bootstrap --wasm).
#
#   ./build.sh           writes wordcount-file.wasm
#   ./build.sh --check   builds into a temporary folder and fails unless the result is
#                        byte for byte the committed wordcount-file.wasm
#
# The module folder ships the built wordcount-file.wasm (its content hash pins it), so providers need no
# compiler; this script is how it was made, and the check proves it still is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
cc="${WASM_CC:-clang}"
flags=(--target=wasm32-wasi --sysroot=/usr -Os -Wall -Wextra -Werror -Wl,--strip-all)
case "${1:-}" in
  "")
    "$cc" "${flags[@]}" -o wordcount-file.wasm wordcount-file.c
    echo "built wordcount-file.wasm ($(wc -c <wordcount-file.wasm) bytes, sha256 $(sha256sum wordcount-file.wasm | cut -c1-64))"
    ;;
  --check)
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    "$cc" "${flags[@]}" -o "$tmp/wordcount-file.wasm" wordcount-file.c
    if ! cmp -s "$tmp/wordcount-file.wasm" wordcount-file.wasm; then
      echo "wordcount-file.wasm is not what wordcount-file.c builds to with $("$cc" --version | head -n1): run ./build.sh and commit it" >&2
      exit 1
    fi
    echo "wordcount-file.wasm matches its source"
    ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
