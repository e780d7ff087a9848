# tiny-devices.sh - devices smaller than the area a table maps, and which error a bad table gets first
# (dm-table.c device_area_is_invalid; the I/O of an accepted table then fails in bio_check_eod).
#@ disks: 16M 16M 1M 100 0
# vda/vdb = 32768 sectors, vdc = 2048 sectors, vdd = a 100-byte image, vde = an empty image.
# In the guest's tmpfs: loop0 = a 100-byte file, loop1 = an empty file, loop2 = a 1000-byte file.
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
io() {      # io: a direct read, a direct write and a read again of sector 0 of m
    run dd if=/dev/mapper/m of=/dev/null bs=512 count=1 iflag=direct
    run dd if=/dev/zero of=/dev/mapper/m bs=512 count=1 oflag=direct
    run dd if=/dev/mapper/m of=/dev/null bs=512 count=1 iflag=direct
}
L="2 /dev/vda 0 /dev/vdb 0"

head -c 100 /dev/zero > /tmp/tiny.img
: > /tmp/empty.img
head -c 1000 /dev/zero > /tmp/k.img
losetup /dev/loop0 /tmp/tiny.img
losetup /dev/loop1 /tmp/empty.img
losetup /dev/loop2 /tmp/k.img

section "device sizes (sectors, bytes)"
for d in vdc vdd vde loop0 loop1 loop2; do echo "$d $(blockdev --getsz /dev/$d) $(blockdev --getsize64 /dev/$d)"; done
klog 0

section "linear over devices smaller than one sector"
for d in loop0 loop1 vdd vde; do
    echo
    run dmsetup create m --table "0 8 linear /dev/$d 0"
    if dmsetup info m >/dev/null 2>&1; then
        run dmsetup table m
        run dmsetup status m
        io
        dmsetup remove m
    fi
    klog 0.5
done
echo "-- file sizes after: tiny $(stat -c %s /tmp/tiny.img) empty $(stat -c %s /tmp/empty.img)"
try "0 8 linear /dev/loop1 8"
try "0 8 linear /dev/vde 100"
try "0 1 linear /dev/loop2 0"
try "0 2 linear /dev/loop2 0"
try "0 8 linear /dev/vdc 2048"
try "0 8 linear /dev/vdc 4000"
try "0 4096 linear /dev/vdc 0"

section "mirror with a leg smaller than one sector"
: > /tmp/empty.img
for t in "core 1 1024 2 /dev/vda 0 /dev/vde 0 1 handle_errors" "core 1 1024 2 /dev/vda 0 /dev/vde 0" "core 1 1024 2 /dev/vde 0 /dev/vda 0 1 handle_errors" "core 1 1024 2 /dev/vda 0 /dev/loop1 0"; do
    echo
    run dmsetup create m --table "0 32768 mirror $t"
    if dmsetup info m >/dev/null 2>&1; then
        sleep 2
        run dmsetup table m
        run dmsetup status m
        events m
        klog 0
        # A write would be held with handle_errors (the region is out of sync after a leg failure).
        case "$t" in *handle_errors*) ;; *) run dd if=/dev/zero of=/dev/mapper/m bs=4096 seek=2560 count=1 oflag=direct ;; esac
        run dd if=/dev/mapper/m of=/dev/null bs=4096 skip=1280 count=1 iflag=direct
        sleep 0.5
        run dmsetup status m
        events m
        dmsetup remove m
    fi
    klog 0.5
    sleep 5     # let the DMERR_LIMIT burst recover before the next table
done
echo "-- file size after: empty $(stat -c %s /tmp/empty.img)"

