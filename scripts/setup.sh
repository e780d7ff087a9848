#!/usr/bin/env bash
# Installs everything umirror's tests and main job need on a fresh Debian machine (run as root or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
# Test tools (qemu, libnbd, nbdkit, fio, FUSE, e2fsprogs, openssl for TLS keys; curl and socat that the
# docs' examples use; bsdutils' script for the terminal tests), the native addon's toolchain (python3,
# make, g++ for node-gyp; python3 also plays the pty and the service manager in tests), systemd
# (systemd-analyze verifies contrib/systemd, systemd-notify sends READY=1; installing it in a container
# starts nothing), iproute2 for the two-host tests (network namespaces), and the kernel oracle VM
# (../shared/oracle, test/oracle).
PACKAGES=(qemu-utils nbdkit libnbd-bin nbdfuse fuse3 fio e2fsprogs xxd openssl curl socat bsdutils python3 make g++ systemd iproute2)
ORACLE_PACKAGES=(qemu-system-x86 busybox-static dmsetup)
missing() { for package in "$@"; do dpkg -s "$package" >/dev/null 2>&1 || echo "$package"; done; }
mapfile -t need < <(missing "${PACKAGES[@]}")
mapfile -t need_oracle < <(missing "${ORACLE_PACKAGES[@]}")
if [ "${#need[@]}" -gt 0 ] || [ "${#need_oracle[@]}" -gt 0 ]; then $SUDO apt-get update -qq; fi
if [ "${#need[@]}" -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "${#need_oracle[@]}" -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_oracle[@]}" >/dev/null
fi
npm ci --no-audit --no-fund
