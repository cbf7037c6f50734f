#!/usr/bin/env bash
# Installs everything Petrel needs on a fresh Debian machine that has Go:
#   - the ONNX Runtime shared library (CPU), from the npm package
#     onnxruntime-node@1.30.0, into .cache/ort/ (git-ignored);
#   - Debian packages: libonnx-testdata (published ONNX models used by the
#     tests), dataset-fashion-mnist (the federated learning data), npm (to
#     fetch the runtime), iproute2 and procps (network namespaces for the
#     mesh tests), systemd and passwd (the edge install test) when missing;
#   - tools: staticcheck and nats-server (an external NATS server for the
#     bus tests and for running against a real NATS), into .cache/bin/;
#   - kube-apiserver and etcd (scripts/envtest) into .cache/envtest/, the
#     real API server the operator's tests run against;
#   - the Go module dependencies.
# Idempotent: each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=$ROOT/.cache
ORT_VERSION=1.30.0
STATICCHECK_VERSION=v0.8.2
NATS_SERVER_VERSION=v2.15.2
mkdir -p "$CACHE/ort" "$CACHE/bin"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

need_pkgs=()
[ -d /usr/share/libonnx-testdata/data/node ] || need_pkgs+=(libonnx-testdata)
# Fashion-MNIST (IDX files) for the federated learning tests and benchmarks.
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need_pkgs+=(dataset-fashion-mnist)
command -v npm >/dev/null || need_pkgs+=(npm)
# The mesh tests build hosts out of network namespaces (ip, sysctl).
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v sysctl >/dev/null || need_pkgs+=(procps)
# The edge install test verifies the systemd unit (systemd-analyze) and
# creates the node's user in a temporary root (useradd --prefix).
command -v systemd-analyze >/dev/null || need_pkgs+=(systemd)
command -v useradd >/dev/null || need_pkgs+=(passwd)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

lib=$CACHE/ort/libonnxruntime.so.1
if [ ! -s "$lib" ] || [ "$(cat "$CACHE/ort/VERSION" 2>/dev/null)" != "$ORT_VERSION" ]; then
  log "fetching ONNX Runtime $ORT_VERSION (npm package onnxruntime-node, ~110 MB)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null)
  tar -xzf "$tmp/onnxruntime-node-$ORT_VERSION.tgz" -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
  install -m 0644 "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$lib.tmp"
  mv "$lib.tmp" "$lib"
  ln -sf libonnxruntime.so.1 "$CACHE/ort/libonnxruntime.so"
  echo "$ORT_VERSION" > "$CACHE/ort/VERSION"
  rm -rf "$tmp"; trap - EXIT
fi
log "ONNX Runtime: $lib"

if [ ! -x "$CACHE/bin/staticcheck" ] || ! "$CACHE/bin/staticcheck" -version 2>/dev/null | grep -q "${STATICCHECK_VERSION#v}"; then
  log "building staticcheck $STATICCHECK_VERSION"
  GOBIN=$CACHE/bin go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi

if [ ! -x "$CACHE/bin/nats-server" ] || [ "$("$CACHE/bin/nats-server" --version 2>/dev/null)" != "nats-server: $NATS_SERVER_VERSION" ]; then
  log "building nats-server $NATS_SERVER_VERSION"
  GOBIN=$CACHE/bin go install "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION"
fi

# A real Kubernetes API server and etcd for the operator's tests
# (controller-runtime envtest). Built from the module proxy through the
# pinned module in scripts/envtest; envtest's own download site is not
# reachable from here, and a fake client would not check the CRD's schema.
envtest_version="$(sha256sum scripts/envtest/go.sum | cut -c1-16)"
if [ ! -x "$CACHE/envtest/kube-apiserver" ] || [ ! -x "$CACHE/envtest/etcd" ] ||
   [ "$(cat "$CACHE/envtest/VERSION" 2>/dev/null)" != "$envtest_version" ]; then
  log "building kube-apiserver and etcd for the operator tests (scripts/envtest; several minutes, once)"
  mkdir -p "$CACHE/envtest"
  (cd scripts/envtest &&
    go build -trimpath -o "$CACHE/envtest/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver &&
    go build -trimpath -o "$CACHE/envtest/etcd" go.etcd.io/etcd/server/v3)
  echo "$envtest_version" > "$CACHE/envtest/VERSION"
fi

log "downloading Go modules"
go mod download
log "done"
