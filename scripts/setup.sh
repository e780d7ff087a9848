#!/usr/bin/env bash
# Installs everything umirror's tests and main job need on a fresh Debian machine (run as root or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
if ! command -v nbdkit >/dev/null || ! command -v qemu-img >/dev/null || ! command -v nbdfuse >/dev/null \
   || ! command -v fio >/dev/null || ! command -v nbdinfo >/dev/null || ! command -v mkfs.ext4 >/dev/null \
   || ! command -v qemu-system-x86_64 >/dev/null || ! test -x /bin/busybox || ! command -v dmsetup >/dev/null \
   || ! command -v make >/dev/null || ! command -v g++ >/dev/null || ! command -v python3 >/dev/null; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    qemu-utils nbdkit libnbd-bin nbdfuse fuse3 fio e2fsprogs xxd python3 make g++ >/dev/null
  # The kernel oracle VM (../shared/oracle, test/oracle): qemu and a static busybox for its initramfs.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    qemu-system-x86 busybox-static dmsetup >/dev/null
fi
npm ci --no-audit --no-fund
