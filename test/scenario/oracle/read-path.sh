# read-path.sh - the mirror's read-failure messages and which leg the default moves to (dm-raid1.c
# mirror_map/mirror_end_io for in-sync reads, do_reads/read_callback for reads the worker issues), and a
# disk log whose device fails only flushes when the mirror resumes (dm-log.c disk_resume).
#@ disks: 16M 16M 16M 1M
# l0 = 253:0 (vda), l1 = 253:1 (vdb), [l2 = 253:2 (vdc)], m next; 32 regions of 1024 sectors.

mk() {      # mk LEGS [FEATURES...]: the mirror over /dev/mapper/l0.. l(LEGS-1)
    local n=$1 legs="" i=0; shift
    while [ $i -lt $n ]; do legs="$legs /dev/mapper/l$i 0"; i=$((i+1)); done
    run dmsetup create m --table "0 32768 mirror core 1 1024 $n$legs${*:+ $*}"
}
legs() {    # legs N: linear l0.. over vda..
    local i=0
    for d in vda vdb vdc; do
        [ $i -lt $1 ] || break
        dmsetup create l$i --table "0 32768 linear /dev/$d 0"; i=$((i+1))
    done
}
teardown() {
    dmsetup remove m
    for l in l2 l1 l0; do dmsetup info $l >/dev/null 2>&1 && dmsetup remove $l; done
    klog
    sleep 5     # let the DMERR_LIMIT bursts recover before the next section
    klog 0
}
rd() {      # rd BLOCK: an O_DIRECT 4 KiB read from the mirror
    run dd if=/dev/mapper/m of=/dev/null bs=4096 skip=$1 count=1 iflag=direct
}

section "J. handle_errors: out-of-sync region, the default leg l0 fails the read (resync frozen behind l1)"
legs 2; dmsetup suspend l1
mk 2 1 handle_errors
sleep 0.5
run dmsetup status m
fail_dev l0
rd 1280
sleep 0.5
run dmsetup status m
events m
klog
echo "-- a second read of another out-of-sync region (the default leg now has an error)"
rd 2560
run dmsetup status m
klog
dmsetup resume l1
teardown

section "K. no handle_errors: out-of-sync region, the default leg l0 fails the read (resync frozen behind l1)"
legs 2; dmsetup suspend l1
mk 2
sleep 0.5
fail_dev l0
rd 1280
sleep 0.5
run dmsetup status m
events m
klog
rd 2560
run dmsetup status m
klog
dmsetup resume l1
teardown

section "L. no handle_errors, 3 legs in sync: reads fail on l0 and l2"
legs 3; mk 3; wait_sync m
fail_dev l0; fail_dev l2
rd 10
sleep 0.5
run dmsetup status m
events m
klog
rd 20
run dmsetup status m
klog
teardown

section "M. handle_errors, 3 legs in sync: reads fail on l0 and l2"
legs 3; mk 3 1 handle_errors; wait_sync m
fail_dev l0; fail_dev l2
rd 10
sleep 0.5
run dmsetup status m
events m
klog
rd 20
run dmsetup status m
events m
klog
teardown

section "N. no handle_errors, 2 legs in sync: both legs fail reads"
legs 2; mk 2; wait_sync m
fail_dev l0; fail_dev l1
rd 10
sleep 0.5
run dmsetup status m
events m
klog
rd 20
run dmsetup status m
klog
teardown

section "O. handle_errors, 2 legs in sync: both legs fail reads"
legs 2; mk 2 1 handle_errors; wait_sync m
fail_dev l0; fail_dev l1
rd 10
sleep 0.5
run dmsetup status m
events m
klog
rd 20
run dmsetup status m
events m
klog
teardown

section "P. disk log whose device fails only flushes before the mirror is created (header flush fails at resume)"
legs 2
dmsetup create fl --table "0 2048 flakey /dev/vdd 0 0 1 1 error_writes"
dmsetup create lg --table "0 2048 delay /dev/vdd 0 0 /dev/vdd 0 0 /dev/mapper/fl 0 0"
run dmsetup create m --table "0 32768 mirror disk 2 /dev/mapper/lg 1024 2 /dev/mapper/l0 0 /dev/mapper/l1 0 1 handle_errors"
wait_sync m
run dmsetup status m
events m
klog
dmsetup remove m; dmsetup remove lg; dmsetup remove fl; dmsetup remove l1; dmsetup remove l0
klog
