#!/usr/bin/env bash
# Builds the reproducible release tarball of Petrel for linux/amd64:
#
#   $DIST/petrel-<version>-linux-amd64.tar.gz
#     petrel-<version>-linux-amd64/
#       bin/petrel                       the binary (cgo, stripped, -trimpath)
#       lib/libonnxruntime.so.1          ONNX Runtime (CPU), from .cache/ort
#       share/petrel/VERSION             the version, one line
#       share/petrel/wasm/<name>.wasm    the deployable example transforms
#       README.md, LICENSE*              when the repository has them
#       THIRD_PARTY_NOTICES.txt          licences of the linked Go modules and
#                                        of ONNX Runtime (scripts/notices.sh)
#   $DIST/SHA256SUMS                     sha256sum lines for the tarballs of this run
#
# The packaged binary finds the runtime through PETREL_ORT_LIB (or --ort-lib):
#   PETREL_ORT_LIB=$PWD/petrel-<version>-linux-amd64/lib/libonnxruntime.so.1
#
# Inputs (environment):
#   VERSION            release version; default `git describe --tags --always
#                      --dirty`, else 0.0.0-dev. Letters, digits, '.', '_',
#                      '+', '-', starting with a letter or digit.
#   SOURCE_DATE_EPOCH  timestamp of every archive entry (seconds since the
#                      epoch); default the last commit's time.
#   DIST               output directory; default dist/ (git-ignored).
#
# Needs what `make setup wasm-examples` leaves in .cache/: the ONNX Runtime
# library (.cache/ort/libonnxruntime.so.1, of the version scripts/setup.sh
# pins) and the example transforms (.cache/wasm/<name>.wasm). `make release`
# builds both first. Only linux/amd64 is built: the binary uses cgo and the
# runtime library is the x64 one.
#
# Reproducible: the same sources, Go toolchain, C toolchain, VERSION and
# SOURCE_DATE_EPOCH give byte-identical tarballs (sorted entries, fixed
# mtime, uid/gid 0, normalized modes: 0755 directories and bin/petrel,
# 0644 everything else; no build id, no VCS stamp; gzip without a name or
# time). deploy/release tests check it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# The example transforms that ship: the ones meant to be deployed. The other
# directories under models/wasm/examples are hostile guests for the sandbox
# tests ("never deploy it"); deploy/release tests keep this list in step
# with them and with deploy/docker/Dockerfile.
WASM_TRANSFORMS=(features topk)
OS=linux
ARCH=amd64

log() { printf '\033[1m[release]\033[0m %s\n' "$*"; }
die() { printf '\033[1m[release]\033[0m error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go is not on PATH"
for tool in tar gzip sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is not on PATH"
done
tar --version 2>/dev/null | grep -q 'GNU tar' || die "GNU tar is required (--sort=name, --mtime, --pax-option)"

# --- version -----------------------------------------------------------------
if [ -z "${VERSION:-}" ]; then
  VERSION=$(git describe --tags --always --dirty 2>/dev/null || true)
  VERSION=${VERSION#v}
  VERSION=${VERSION:-0.0.0-dev}
fi
[[ $VERSION =~ ^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$ ]] ||
  die "VERSION=\"$VERSION\": want 1-64 letters, digits, '.', '_', '+', '-', starting with a letter or digit"

# --- timestamp ---------------------------------------------------------------
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || true)
  [ -n "$SOURCE_DATE_EPOCH" ] || die "SOURCE_DATE_EPOCH is not set and there is no git commit to take it from"
fi
[[ $SOURCE_DATE_EPOCH =~ ^[0-9]{1,12}$ ]] || die "SOURCE_DATE_EPOCH=\"$SOURCE_DATE_EPOCH\": want seconds since the epoch"
export SOURCE_DATE_EPOCH

# --- inputs from .cache ------------------------------------------------------
ORT_VERSION=$(sed -n 's/^ORT_VERSION=\([0-9.]*\)$/\1/p' scripts/setup.sh)
[ -n "$ORT_VERSION" ] || die "cannot read ORT_VERSION from scripts/setup.sh"
ORT_LIB=$ROOT/.cache/ort/libonnxruntime.so.1
[ -s "$ORT_LIB" ] || die "ONNX Runtime library missing: $ORT_LIB; run \`make setup wasm-examples\` (or \`make release\`)"
have_ort=$(cat "$ROOT/.cache/ort/VERSION" 2>/dev/null || true)
[ "$have_ort" = "$ORT_VERSION" ] ||
  die "ONNX Runtime in .cache/ort is version \"$have_ort\", scripts/setup.sh pins $ORT_VERSION; run \`make setup\`"
for name in "${WASM_TRANSFORMS[@]}"; do
  [ -d "models/wasm/examples/$name" ] || die "example transform $name: models/wasm/examples/$name does not exist"
  [ -s ".cache/wasm/$name.wasm" ] ||
    die "example transform missing: .cache/wasm/$name.wasm; run \`make setup wasm-examples\` (or \`make release\`)"
done

host=$(go env GOHOSTOS)/$(go env GOHOSTARCH)
[ "$host" = "$OS/$ARCH" ] || die "only $OS/$ARCH releases are built (cgo needs the native C toolchain); this host is $host"

DIST=${DIST:-dist}
mkdir -p "$DIST"
DIST=$(cd "$DIST" && pwd)
name=petrel-$VERSION-$OS-$ARCH
tarball=$DIST/$name.tar.gz

stage=$(mktemp -d)
trap 'rm -rf "$stage" "$tarball.tmp" "$DIST/SHA256SUMS.tmp"' EXIT
top=$stage/$name
umask 022
mkdir -p "$top/bin" "$top/lib" "$top/share/petrel/wasm"

# --- build -------------------------------------------------------------------
log "building petrel $VERSION ($OS/$ARCH, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"
CGO_ENABLED=1 GOOS=$OS GOARCH=$ARCH GOFLAGS= \
  go build -trimpath -buildvcs=false \
  -ldflags "-s -w -buildid= -X main.Version=$VERSION" \
  -o "$top/bin/petrel" ./cmd/petrel

# --- layout ------------------------------------------------------------------
cp "$ORT_LIB" "$top/lib/libonnxruntime.so.1"
for name_ in "${WASM_TRANSFORMS[@]}"; do
  cp ".cache/wasm/$name_.wasm" "$top/share/petrel/wasm/$name_.wasm"
done
printf '%s\n' "$VERSION" > "$top/share/petrel/VERSION"
scripts/notices.sh > "$top/THIRD_PARTY_NOTICES.txt" || die "writing the third-party notices failed"
for doc in README.md LICENSE LICENSE.md LICENSE.txt NOTICE; do
  if [ -f "$doc" ]; then cp "$doc" "$top/$doc"; fi
done
find "$top" -type d -exec chmod 0755 {} +
find "$top" -type f -exec chmod 0644 {} +
chmod 0755 "$top/bin/petrel"

# --- archive -----------------------------------------------------------------
log "writing $tarball"
tar -C "$stage" --format=posix --sort=name --mtime="@$SOURCE_DATE_EPOCH" \
  --owner=0 --group=0 --numeric-owner \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  -cf - "$name" | gzip -n -9 > "$tarball.tmp"
mv "$tarball.tmp" "$tarball"
(cd "$DIST" && sha256sum "$name.tar.gz" > SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
log "done: $tarball"
sed 's/^/[release]   /' "$DIST/SHA256SUMS"
