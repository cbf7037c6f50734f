#!/usr/bin/env bash
# Builds bin/petrel and runs the benchmark suite (docs/PERFORMANCE.md),
# writing the report to docs/perf-latest.md. Extra arguments go to
# `petrel bench suite` (e.g. --quick, --rounds 5, --no-variants).
#
# The ONNX Runtime library is $PETREL_ORT_LIB, else the setup cache
# .cache/ort/libonnxruntime.so.1 (`make setup` fetches it).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${PETREL_ORT_LIB:-}" && -f .cache/ort/libonnxruntime.so.1 ]]; then
	export PETREL_ORT_LIB="$PWD/.cache/ort/libonnxruntime.so.1"
fi
export CGO_ENABLED=1

go build -trimpath -o bin/petrel ./cmd/petrel
exec bin/petrel bench suite --out docs/perf-latest.md "$@"
