#!/usr/bin/env bash
# Runs on the GPU machine, in the repository root, after every piece of
# .cache/gpu-carry (scripts/gpu-prepare.sh) has been carried there: checks
# the GPU, reassembles ONNX Runtime's CUDA build, runs the gpu-tagged
# integration tests and the CPU/GPU benchmark, and writes everything
# under $OUT (default ./gpu-out):
#   nvidia-smi.txt, ort-gpu-test.txt, node-gpu-test.txt, bench.txt,
#   gpu-bench.md (the CPU/GPU table), summary.txt
# Exit status: 0 when the tests passed and the benchmark ran.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CARRY=$ROOT/.cache/gpu-carry
OUT=${OUT:-$ROOT/gpu-out}
NV=${PETREL_CUDA_LIBS:-/opt/torch/.venv/lib/python3.12/site-packages/nvidia}
mkdir -p "$OUT"
: > "$OUT/summary.txt"
status=0
log() { printf '[gpu-bench] %s\n' "$*" | tee -a "$OUT/summary.txt"; }
start=$(date +%s)

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || { log "nvidia-smi failed: no usable GPU"; cat "$OUT/nvidia-smi.txt"; exit 1; }
log "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"

[ -f "$CARRY/last/parts" ] || { log "missing $CARRY/last: carry every piece first (docs/gpu.md)"; exit 1; }
parts=$(cat "$CARRY/last/parts")
[[ $parts =~ ^[1-9][0-9]*$ ]] || { log "bad piece count '$parts' in $CARRY/last/parts"; exit 1; }
lib=$ROOT/.cache/ort-gpu-run
mkdir -p "$lib" "$ROOT/.cache/gpu-bin"
pieces=()
for i in $(seq 1 "$parts"); do
  p=("$CARRY/part$i"/cuda.gz.*)
  [ -f "${p[0]}" ] || { log "missing $CARRY/part$i: carry it first (docs/gpu.md)"; exit 1; }
  pieces+=("${p[@]}")
done
cat "${pieces[@]}" | gunzip > "$lib/libonnxruntime_providers_cuda.so"
echo "$(cat "$CARRY/last/cuda.sha256")  $lib/libonnxruntime_providers_cuda.so" | sha256sum -c --quiet - || { log "CUDA provider checksum mismatch"; exit 1; }
gunzip -c "$CARRY/last/libonnxruntime.so.gz" > "$lib/libonnxruntime.so"
gunzip -c "$CARRY/last/libonnxruntime_providers_shared.so.gz" > "$lib/libonnxruntime_providers_shared.so"
for b in ort.test node.test petrel; do
  gunzip -c "$CARRY/last/bin/$b.gz" > "$ROOT/.cache/gpu-bin/$b"
  chmod +x "$ROOT/.cache/gpu-bin/$b"
done

# The CUDA 13 and cuDNN libraries of the PyTorch install (cu13/lib, cudnn/lib
# and any other nvidia/*/lib, e.g. a separate curand).
cuda_path=$NV/cu13/lib:$NV/cudnn/lib
for d in "$NV"/*/lib; do
  [ -d "$d" ] || continue
  case ":$cuda_path:" in *":$d:"*) ;; *) cuda_path=$cuda_path:$d ;; esac
done
export LD_LIBRARY_PATH=$lib:$cuda_path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PETREL_ORT_LIB=$lib/libonnxruntime.so
missing=$(ldd "$lib/libonnxruntime_providers_cuda.so" | grep 'not found' || true)
if [ -n "$missing" ]; then
  log "the CUDA provider lacks libraries (set PETREL_CUDA_LIBS?):"
  echo "$missing" | tee -a "$OUT/summary.txt"
  status=1
fi
log "gpu-tagged ONNX Runtime tests"
(cd models/ort && "$ROOT/.cache/gpu-bin/ort.test" -test.run '^Test(GPU|CUDAFallback)' -test.v -test.timeout 5m) > "$OUT/ort-gpu-test.txt" 2>&1 || status=1
tail -3 "$OUT/ort-gpu-test.txt" | tee -a "$OUT/summary.txt"
log "gpu-tagged node test"
(cd node && "$ROOT/.cache/gpu-bin/node.test" -test.run '^TestGPU' -test.v -test.timeout 5m) > "$OUT/node-gpu-test.txt" 2>&1 || status=1
tail -3 "$OUT/node-gpu-test.txt" | tee -a "$OUT/summary.txt"
log "CPU/GPU benchmark"
"$ROOT/.cache/gpu-bin/petrel" bench runtime --providers cpu,cuda --ort-lib "$PETREL_ORT_LIB" \
  --batches "${BATCHES:-1,8,64,256}" --concurrency "${CONCURRENCY:-1,4}" --duration "${DURATION:-2s}" \
  --out "$OUT/gpu-bench.md" > "$OUT/bench.txt" 2>&1 || status=1
tail -25 "$OUT/bench.txt" | tee -a "$OUT/summary.txt"
log "done in $(( $(date +%s) - start )) s, status $status"
exit $status
