#!/usr/bin/env bash
# Portability check of the one compiled module on 64-bit ARM, from an x86-64 Debian machine (root, apt):
# cross-compiles mam_client/crypto/_curl.c for aarch64 with the flags setup.py uses (no -march), then runs
# tools/arm64_check.py under qemu-aarch64 with Debian's arm64 Python 3.11: every MAM vector message must be
# reproduced byte for byte and a Curl-P-81 proof of work must meet its MWM. Not part of the test suite (it
# changes the machine's apt architectures); run it when _curl.c changes.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$(mktemp -d)}"
dpkg --add-architecture arm64
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static gcc-aarch64-linux-gnu >/dev/null
mkdir -p "$WORK" && cd "$WORK"
apt-get download -qq python3.11-minimal:arm64 libpython3.11-minimal:arm64 libpython3.11-stdlib:arm64 \
  libpython3.11-dev:arm64 libc6:arm64 libexpat1:arm64 zlib1g:arm64 libffi8:arm64 libssl3:arm64
mkdir -p root
for deb in ./*.deb; do dpkg -x "$deb" root; done
SO="$REPO/mam_client/crypto/_curl.cpython-311-aarch64-linux-gnu.so"
trap 'rm -f "$SO"' EXIT
aarch64-linux-gnu-gcc -O3 -std=c99 -shared -fPIC -pthread -I root/usr/include/python3.11 -I root/usr/include \
  "$REPO/mam_client/crypto/_curl.c" -o "$SO"
qemu-aarch64-static -L "$WORK/root" "$WORK/root/usr/bin/python3.11" "$REPO/tools/arm64_check.py" "$REPO"
