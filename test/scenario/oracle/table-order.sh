# table-order.sh - which error a bad table gets first: mirror_ctr's order (dirty log with its device,
# mirror count, each leg's offset then its lookup, features), then dm core's size check over every
# target of the table (dm_calculate_queue_limits, after every constructor ran).
#@ disks: 16M 16M 1M 100 0
# vda/vdb = 32768 sectors, vdc = 2048 sectors, vdd = a 100-byte image (1 sector), vde = an empty image.
# In the guest's tmpfs: loop1 = an empty file, loop2 = a 1000-byte file (1 sector).
# Each attempt uses a fresh device "m" (253:0), removed afterwards if it was left behind.

try() {     # try TABLE
    echo
    run dmsetup create m --table "$1"
    dmsetup info m >/dev/null 2>&1 && { run dmsetup table m; dmsetup remove m; }
    klog 0
}
tryfile() { # tryfile LINE... : a multi-line table, given to dmsetup as a file
    echo
    printf '%s\n' "$@" > /tmp/table
    echo "-- table file:"; sed 's/^/   /' /tmp/table
    run dmsetup create m /tmp/table
    dmsetup info m >/dev/null 2>&1 && { run dmsetup table m; dmsetup remove m; }
    klog 0
}
L="2 /dev/vda 0 /dev/vdb 0"

: > /tmp/empty.img
head -c 1000 /dev/zero > /tmp/k.img
losetup /dev/loop1 /tmp/empty.img
losetup /dev/loop2 /tmp/k.img
klog 0

section "mirror legs and logs too small or offsets past the end"
try "0 32768 mirror core 1 1024 2 /dev/vda 0 /dev/vdc 0"
try "0 32768 mirror core 1 1024 2 /dev/vda 0 /dev/vdb 40000"
try "0 32768 mirror core 1 1024 2 /dev/vda 32768 /dev/vdb 0"
try "0 2048 mirror core 1 1024 2 /dev/vda 0 /dev/loop2 0"
try "0 32768 mirror disk 2 /dev/loop1 1024 $L"
try "0 32768 mirror disk 2 /dev/vde 1024 $L"
try "0 32768 mirror disk 2 /dev/vdd 1024 $L"

section "which error comes first"
try "0 32768 mirror disk 2 /dev/missing 1024 1 /dev/vda 0"
try "0 32768 mirror disk 2 /dev/missing 1000 $L"
try "0 32768 mirror disk 3 /dev/missing 1024 bogus $L"
try "0 32768 mirror disk 2 /dev/vde 1000 1 /dev/vda 0"
try "0 32768 mirror disk 2 /dev/vde 1024 1 /dev/vda 0"
try "0 32768 mirror disk 2 /dev/vdc 1024 2 /dev/vda 0 /dev/missing 0 1 foo"
try "0 32768 mirror core 1 1024 2 /dev/missing 0 /dev/vdb x"
try "0 32768 mirror core 1 1024 3 /dev/vda 0 /dev/missing 0 /dev/vdb 0 2 handle_errors"
try "0 32768 mirror core 1 1024 2 /dev/vda 0 /dev/vdb 16384 1 foo"
try "0 32768 mirror core 1 1024 2 /dev/vda 0 /dev/vdb 16384 1 keep_log"
try "0 32768 mirror core 1 1024 2 /dev/vda 0 /dev/vdb 16384 1 handle_errors extra"
try "0 32768 mirror core 1 1024 2 /dev/vdc 0 /dev/missing 0"
try "0 32768 mirror disk 2 /dev/vdd 1024 2 /dev/vda 0 /dev/missing 0"
tryfile "0 2048 linear /dev/vdc 1" "2048 2048 linear /dev/vda x"
tryfile "0 2048 linear /dev/vdc 1" "2048 32768 mirror core 1 1024 2 /dev/vda 0 /dev/missing 0"
tryfile "0 4096 linear /dev/vdc 0" "4096 4096 linear /dev/vdc 8"
tryfile "0 2048 linear /dev/vdc 0" "2048 32768 mirror core 1 1024 2 /dev/vda 0 /dev/vdc 0"

section "a too-small table loaded into an existing device"
run dmsetup create m --table "0 2048 linear /dev/vda 0"
run dmsetup load m --table "0 2048 linear /dev/vdc 1"
klog 0
run dmsetup table --inactive m
run dmsetup resume m
klog 0
run dmsetup table m
run dmsetup info -c --noheadings -o attr m
dmsetup remove m
klog 0
