#!/bin/bash
# Disk-log round trip with the real kernel (slow: one oracle VM run, about 70 s under TCG). npm test runs
# it through test/oracle/disk-log-roundtrip.test.ts (with UMIRROR_SKIP_BUILD=1: npm test built already).
#  (a) a clean log written by DiskDirtyLog activates under dm-mirror with no resync: 32/32 at once,
#      while leg 2 sits behind a suspended gate (any resync would freeze below 32/32);
#  (b) the log the kernel then wrote (clean, copied to vdd inside the VM) loads in DiskDirtyLog as
#      32/32, and the log the kernel left with a write held in flight to region 4 loads as 31/32 with
#      exactly region 4 out of sync.
# Usage: test/oracle/disk-log-roundtrip.sh   (from the repository root; needs ../shared/oracle beside the repository)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ORACLE=${ORACLE_DIR:-$ROOT/../shared/oracle}
cd "$ROOT"
[ "${UMIRROR_SKIP_BUILD:-}" = 1 ] || npx tsc -p tsconfig.test.json
TOOL="node build/test/oracle/disk-log-roundtrip-tool.js"
W=$(mktemp -d "${TMPDIR:-/tmp}/umirror-dlog-oracle.XXXXXX")
trap 'rm -rf "$W"' EXIT
truncate -s 16M "$W/a.img" "$W/b.img"
truncate -s 1M "$W/log.img" "$W/copy.img"
$TOOL write-clean "$W/log.img"
cat > "$W/scenario.sh" <<'SCEN'
section "umirror-written clean log, leg 2 gated"
gate g /dev/vdb
run dmsetup create m --table "0 32768 mirror disk 2 /dev/vdc 1024 2 /dev/vda 0 /dev/mapper/g 0"
run dmsetup status m
hexdump_dev /dev/vdc 1536
run dmsetup resume g
run dmsetup remove m
run dd if=/dev/vdc of=/dev/vdd bs=4096 count=1 conv=fsync
section "kernel leaves region 4 dirty (write held behind the gate)"
run dmsetup create m --table "0 32768 mirror disk 2 /dev/vdc 1024 2 /dev/vda 0 /dev/mapper/g 0"
run dmsetup suspend g
dd if=/dev/zero of=/dev/mapper/m bs=512 seek=5000 count=8 conv=fsync 2>/dev/null &
sleep 1
run dmsetup status m
hexdump_dev /dev/vdc 1536
klog
SCEN
OUT=$("$ORACLE/run.sh" "$W/scenario.sh" "$W/a.img" "$W/b.img" "$W/log.img" "$W/copy.img")
echo "$OUT"
fail=0
if echo "$OUT" | grep -q '^0 32768 mirror 2 254:0 253:0 32/32 1 AA 3 disk 254:32 A$'; then
  echo "(a) OK: the kernel accepted the umirror log as in sync (32/32 with resync frozen)"
else
  echo "(a) FAILED: no 32/32 status line right after create"; fail=1
fi
$TOOL check "$W/copy.img" 32 || fail=1
$TOOL check "$W/log.img" 32 4 || fail=1
exit $fail
