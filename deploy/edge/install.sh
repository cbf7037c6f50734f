#!/usr/bin/env bash
# Installs a Petrel edge node on a Debian-like machine with systemd:
#
#   sudo deploy/edge/install.sh --from dist/petrel-0.1.0-linux-amd64.tar.gz \
#       --coordinator https://coordinator.example:7070 \
#       --join-token-file /root/join-token --id store-042 --region eu-west
#
# It installs the binary and the ONNX Runtime library, creates the system
# user `petrel`, writes /etc/petrel/node.yaml (keys are `petrel node` flag
# names; see docs/deploy.md), enrols the node with the coordinator using a
# join token (the node's key is made here and never leaves the machine),
# checks the result with `petrel node --check-config`, installs the systemd
# unit and starts it.
#
# DESTDIR=/some/root installs into a tree instead of the machine (as a
# package build would): the user goes into DESTDIR/etc/passwd (useradd
# --prefix), and nothing is started. Run it again to upgrade: existing
# configuration, keys and enrolment are kept.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: install.sh --from TARBALL|DIR [options]

  --from PATH             a release tarball (make release) or an unpacked one
  --coordinator URL       the coordinator's management API (enrolment)
  --join-token-file FILE  a join token from the coordinator's operator
  --id ID                 this node's id (default: the host name)
  --region REGION         region advertised to peers
  --labels k=v,k=v        labels for model placement
  --hosts h1,h2           names and addresses peers reach this node by
  --listen ADDR           inference API address (default 0.0.0.0:8443)
  --gossip-bind ADDR      gossip address (default 0.0.0.0:7946)
  --ca-file PEM           CA of the coordinator's HTTPS certificate
  --no-enrol              install only; enrol later with `petrel enrol`
  --no-start              do not enable and start the service
EOF
}

die() { echo "install.sh: $*" >&2; exit 2; }
# yq quotes a value as a YAML single-quoted scalar ('[::]:8443', "a: b").
yq() { printf "'%s'" "${1//\'/\'\'}"; }
log() { echo "install.sh: $*"; }

FROM="" COORD="" TOKEN="" ID="" REGION="" LABELS="" HOSTS="" LISTEN="0.0.0.0:8443" GOSSIP="0.0.0.0:7946" CAFILE=""
ENROL=1 START=1
while [ $# -gt 0 ]; do
  case "$1" in
    --from) FROM=${2:?}; shift 2 ;;
    --coordinator) COORD=${2:?}; shift 2 ;;
    --join-token-file) TOKEN=${2:?}; shift 2 ;;
    --id) ID=${2:?}; shift 2 ;;
    --region) REGION=${2:?}; shift 2 ;;
    --labels) LABELS=${2:?}; shift 2 ;;
    --hosts) HOSTS=${2:?}; shift 2 ;;
    --listen) LISTEN=${2:?}; shift 2 ;;
    --gossip-bind) GOSSIP=${2:?}; shift 2 ;;
    --ca-file) CAFILE=${2:?}; shift 2 ;;
    --no-enrol) ENROL=0; shift ;;
    --no-start) START=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument $1" ;;
  esac
done

DESTDIR=${DESTDIR:-}
if [ -n "$DESTDIR" ]; then
  # An absolute path without a trailing slash, so that the paths
  # enrolment writes can be stripped of it exactly.
  DESTDIR=$(realpath -m "$DESTDIR")
  [ "$DESTDIR" != / ] || DESTDIR=""
fi
[ -n "$FROM" ] || { usage >&2; die "--from is required"; }
if [ "$ENROL" = 1 ]; then
  [ -n "$COORD" ] || die "--coordinator is required (or --no-enrol)"
  [ -n "$TOKEN" ] || die "--join-token-file is required (or --no-enrol)"
  [ -r "$TOKEN" ] || die "join token file $TOKEN is not readable"
fi
# Root even with DESTDIR: the user is created (useradd --prefix) and the
# files are owned as on the machine.
[ "$(id -u)" = 0 ] || die "run as root"
ID=${ID:-$(hostname -s)}

BIN=/usr/local/bin/petrel
LIBDIR=/usr/local/lib/petrel
ORTLIB=$LIBDIR/libonnxruntime.so.1
ETC=/etc/petrel
STATE=/var/lib/petrel
UNIT=/etc/systemd/system/petrel-node.service
here=$(cd "$(dirname "$0")" && pwd)

# The release: a tarball is unpacked into a temporary directory.
src=$FROM
if [ -f "$FROM" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  tar -xzf "$FROM" -C "$tmp"
  src=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d | head -n1)
fi
[ -x "$src/bin/petrel" ] || die "$FROM has no bin/petrel"
[ -f "$src/lib/libonnxruntime.so.1" ] || die "$FROM has no lib/libonnxruntime.so.1"

log "installing $BIN and $ORTLIB"
install -d -m 0755 "$DESTDIR/usr/local/bin" "$DESTDIR$LIBDIR"
install -m 0755 "$src/bin/petrel" "$DESTDIR$BIN"
install -m 0644 "$src/lib/libonnxruntime.so.1" "$DESTDIR$ORTLIB"
if [ -d "$src/share/petrel" ]; then
  install -d -m 0755 "$DESTDIR/usr/local/share/petrel"
  cp -r "$src/share/petrel/." "$DESTDIR/usr/local/share/petrel/"
fi

# The system user, in DESTDIR's passwd when installing into a tree.
prefix=()
[ -n "$DESTDIR" ] && prefix=(--prefix "$DESTDIR")
if ! grep -q '^petrel:' "$DESTDIR/etc/passwd" 2>/dev/null; then
  log "creating the system user petrel"
  useradd "${prefix[@]}" --system --user-group --no-create-home \
    --home-dir "$STATE" --shell /usr/sbin/nologin --comment "Petrel node" petrel
fi
uid=$(awk -F: '$1=="petrel"{print $3}' "$DESTDIR/etc/passwd")
gid=$(awk -F: '$1=="petrel"{print $4}' "$DESTDIR/etc/passwd")
[ -n "$uid" ] || die "user petrel is missing from $DESTDIR/etc/passwd"

install -d -m 0750 "$DESTDIR$ETC" "$DESTDIR$STATE" "$DESTDIR$STATE/blobs"
chown "0:$gid" "$DESTDIR$ETC"
chown "$uid:$gid" "$DESTDIR$STATE" "$DESTDIR$STATE/blobs"

# The configuration: written once, then left to the operator (and to
# enrolment, which merges its keys in).
conf=$DESTDIR$ETC/node.yaml
if [ ! -f "$conf" ]; then
  log "writing $ETC/node.yaml"
  umask 027
  {
    echo "# Petrel edge node. Keys are \`petrel node\` flag names (petrel node -h);"
    echo "# flags on the command line win. Check: petrel node --config $ETC/node.yaml --check-config"
    echo "id: $(yq "$ID")"
    echo "listen: $(yq "$LISTEN")"
    echo "role: edge"
    echo "gossip-bind: $(yq "$GOSSIP")"
    [ -n "$REGION" ] && echo "region: $(yq "$REGION")"
    echo "blob-dir: $STATE/blobs"
    echo "ort-lib: $ORTLIB"
    echo "log-json: true"
  } > "$conf"
  chown "0:$gid" "$conf"
fi

if [ "$ENROL" = 1 ] && ! grep -q '^mesh-cert:' "$conf"; then
  log "enrolling $ID with $COORD"
  args=(enrol --coordinator "$COORD" --token-file "$TOKEN" --id "$ID"
        --dir "$DESTDIR$STATE" --config "$conf")
  [ -n "$REGION" ] && args+=(--region "$REGION")
  [ -n "$LABELS" ] && args+=(--labels "$LABELS")
  [ -n "$HOSTS" ] && args+=(--hosts "$HOSTS")
  [ -n "$CAFILE" ] && args+=(--ca-file "$CAFILE")
  PETREL_ORT_LIB="$DESTDIR$ORTLIB" "$DESTDIR$BIN" "${args[@]}"
  if [ -n "$DESTDIR" ]; then
    # Enrolment wrote paths under DESTDIR; the installed node sees them
    # without it.
    # (a literal match: DESTDIR may hold characters sed would read as a
    # pattern)
    DESTDIR="$DESTDIR" perl -0pi -e 's/\Q$ENV{DESTDIR}\E\//\//g' "$conf"
  fi
  chown -R "$uid:$gid" "$DESTDIR$STATE"
  chown "0:$gid" "$conf"
fi

log "installing the systemd unit"
install -d -m 0755 "$DESTDIR/etc/systemd/system"
install -m 0644 "$here/petrel-node.service" "$DESTDIR$UNIT"

if [ -n "$DESTDIR" ]; then
  log "installed into $DESTDIR (nothing started)"
  exit 0
fi
if [ "$ENROL" = 0 ] && ! grep -q '^mesh-cert:' "$conf"; then
  log "installed, not enrolled: run $BIN enrol (see docs/deploy.md), then systemctl enable --now petrel-node"
  exit 0
fi
log "checking the configuration"
runuser -u petrel -- env PETREL_ORT_LIB="$ORTLIB" "$BIN" node --config "$ETC/node.yaml" --check-config
if [ "$START" = 1 ] && command -v systemctl >/dev/null; then
  systemctl daemon-reload
  systemctl enable --now petrel-node.service
  log "started: systemctl status petrel-node; journalctl -u petrel-node"
else
  log "installed; start with: systemctl enable --now petrel-node"
fi
