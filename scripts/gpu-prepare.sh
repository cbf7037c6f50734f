#!/usr/bin/env bash
# Prepares, on this (x86-64, cgo) machine, everything the GPU checks need on
# the device machine (docs/gpu.md), in pieces the device tool can carry
# (64 MiB per call, files kept while the machine stays warm):
#
#   .cache/gpu-carry/part1 .. partN   the CUDA provider library, gzip -9, split
#   .cache/gpu-carry/last             the ONNX Runtime 1.29 core (CUDA 13 build)
#                                     and providers_shared libraries, the
#                                     gpu-tagged test binaries and petrel,
#                                     all gzip -9
#
# The libraries come from the npm packages com.github.asus4.onnxruntime@0.4.9
# (core) and com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9 (CUDA
# provider): the provider must sit beside the core of the same version, so
# the GPU run uses this 1.29 core, not the 1.30 CPU one setup.sh installs.
# Then run scripts/gpu-bench.sh on the device (it reassembles, checks
# nvidia-smi, runs the tests and the benchmark, writes under $OUT).
# Idempotent: the download is skipped when the libraries are there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PKG_VERSION=0.4.9
LIBS=$ROOT/.cache/ort-gpu
CARRY=$ROOT/.cache/gpu-carry
CHUNK=$((60 * 1024 * 1024))
log() { printf '\033[1m[gpu-prepare]\033[0m %s\n' "$*"; }

mkdir -p "$LIBS"
if [ ! -s "$LIBS/libonnxruntime_providers_cuda.so" ] || [ ! -s "$LIBS/libonnxruntime.so" ]; then
  command -v npm >/dev/null || { echo "gpu-prepare: npm is needed (scripts/setup.sh installs it)" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  log "fetching com.github.asus4.onnxruntime@$PKG_VERSION (ONNX Runtime 1.29 core)"
  (cd "$tmp" && npm pack --silent "com.github.asus4.onnxruntime@$PKG_VERSION" >/dev/null)
  log "fetching com.github.asus4.onnxruntime.linux-x64-gpu@$PKG_VERSION (CUDA provider, ~230 MB)"
  (cd "$tmp" && npm pack --silent "com.github.asus4.onnxruntime.linux-x64-gpu@$PKG_VERSION" >/dev/null)
  for t in "$tmp"/*.tgz; do
    mkdir -p "$tmp/x" && tar -xzf "$t" -C "$tmp/x"
  done
  for f in libonnxruntime.so libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so; do
    src=$(find "$tmp/x" -path '*Plugins/Linux/x64/*' -name "$f" | head -1)
    [ -n "$src" ] || { echo "gpu-prepare: $f is not in the packages" >&2; exit 1; }
    install -m 0644 "$src" "$LIBS/$f"
  done
  rm -rf "$tmp"; trap - EXIT
fi
log "libraries: $(cd "$LIBS" && ls -s --block-size=M *.so | tr '\n' ' ')"

rm -rf "$CARRY"
mkdir -p "$CARRY/last/bin"
log "splitting the CUDA provider into chunks of at most 60 MiB (gzip -9)"
gzip -9 -c "$LIBS/libonnxruntime_providers_cuda.so" | split -b "$CHUNK" -d -a 1 - "$CARRY/cuda.gz."
n=0
for c in "$CARRY"/cuda.gz.*; do
  n=$((n + 1))
  mkdir -p "$CARRY/part$n"
  mv "$c" "$CARRY/part$n/"
done
sha256sum "$LIBS/libonnxruntime_providers_cuda.so" | awk '{print $1}' > "$CARRY/last/cuda.sha256"
gzip -9 -c "$LIBS/libonnxruntime.so" > "$CARRY/last/libonnxruntime.so.gz"
gzip -9 -c "$LIBS/libonnxruntime_providers_shared.so" > "$CARRY/last/libonnxruntime_providers_shared.so.gz"

log "building the gpu-tagged test binaries and petrel (x86-64, cgo, stripped)"
export CGO_ENABLED=1
go test -c -tags gpu -ldflags='-s -w' -o "$CARRY/last/bin/ort.test" ./models/ort/
go test -c -tags gpu -ldflags='-s -w' -o "$CARRY/last/bin/node.test" ./node/
go build -ldflags='-s -w' -o "$CARRY/last/bin/petrel" ./cmd/petrel
gzip -9 "$CARRY/last/bin/"*
echo "$n" > "$CARRY/last/parts"

log "carry plan ($n + 1 calls while the machine stays warm; each under 64 MiB):"
for d in "$CARRY"/part* "$CARRY/last"; do
  printf '  %-28s %s\n' "${d#"$ROOT"/}" "$(du -sh "$d" | cut -f1)"
done
max=$(du -sb "$CARRY"/part* "$CARRY/last" | awk '{print $1}' | sort -n | tail -1)
if [ "$max" -ge $((64 * 1024 * 1024)) ]; then
  echo "gpu-prepare: a piece is over 64 MiB ($max bytes)" >&2
  exit 1
fi
