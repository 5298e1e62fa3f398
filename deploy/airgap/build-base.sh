#!/usr/bin/env bash
# For air-gapped builds: make a local Debian bookworm base image without any container registry.
# debootstrap a minimal rootfs (python3.11 + venv, ca-certificates, curl) from a Debian mirror and
# `docker import` it. deploy/Dockerfile and deploy/airgap/*.Dockerfile then build FROM it:
#   deploy/airgap/build-base.sh                       # -> routerforge-base:bookworm
#   docker build --network host --build-arg BASE_IMAGE=routerforge-base:bookworm -f deploy/Dockerfile .
# Needs root, debootstrap and a running dockerd. Environment:
#   RF_BASE_IMAGE   tag to create (default routerforge-base:bookworm)
#   RF_MIRROR       Debian mirror (default http://deb.debian.org/debian)
#   RF_EXTRA_CA_DIR directory of extra *.crt CA certificates to trust inside the image (a TLS-intercepting
#                   egress proxy); the image then trusts that CA: keep it local, never push it.
#   RF_REBUILD=1    rebuild even if the tag exists
set -euo pipefail
IMAGE=${RF_BASE_IMAGE:-routerforge-base:bookworm}
MIRROR=${RF_MIRROR:-http://deb.debian.org/debian}
if [[ -z "${RF_REBUILD:-}" ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base image $IMAGE exists (RF_REBUILD=1 to rebuild)"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
ROOTFS=$(mktemp -d /var/tmp/rf-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,curl \
  bookworm "$ROOTFS" "$MIRROR"
cat > "$ROOTFS/etc/apt/sources.list" <<SRC
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SRC
if [[ -n "${RF_EXTRA_CA_DIR:-}" ]]; then
  cp "$RF_EXTRA_CA_DIR"/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
  chroot "$ROOTFS" update-ca-certificates
fi
# what a slim image leaves out: package caches, docs, man pages
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* \
  "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/var/log/*.log
tar -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' - "$IMAGE"
docker image ls "$IMAGE"
