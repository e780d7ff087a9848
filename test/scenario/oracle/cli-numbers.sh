# cli-numbers.sh - numbers dmsetup and the kernel refuse: message sectors, wait event numbers, and mirror
# logs whose region count the kernel cannot allocate (create_log_context's vmalloc failures).
#@ disks: 16M 16M 1M

try() {     # try TABLE
    echo
    run dmsetup create m --table "$1"
    dmsetup info m >/dev/null 2>&1 && { run dmsetup table m; dmsetup remove m; }
    klog 0
}
L="2 /dev/vda 0 /dev/vdb 0"

section "message sector"
run dmsetup create m --table "0 32768 mirror core 1 1024 $L"
wait_sync m
for s in abc -1 1x "" 32768 18446744073709551615 18446744073709551616; do
    run dmsetup message m "$s" anything
    klog 0
done

section "wait event numbers (the device is at event 1)"
run timeout 5 dmsetup wait m 5x
run timeout 5 dmsetup wait m abc
run timeout 5 dmsetup wait m -1
run timeout 5 dmsetup wait m 4294967296
run timeout 5 dmsetup wait m 99999999999999999999
dmsetup remove m

section "huge core logs (region size 2)"
try "0 536870912 mirror core 1 2 $L"
# 2^31 regions: the 512 MiB VM runs out of memory in vmalloc ("couldn't allocate sync bitset", after the OOM killer)
try "0 8589934592 mirror core 1 2 $L"
try "0 17592186044416 mirror core 1 2 $L"
try "0 17592186044416 mirror core 1 1024 $L"

section "huge disk logs (1M log device)"
try "0 4294967296 mirror disk 2 /dev/vdc 2 $L"
try "0 17592186044416 mirror disk 2 /dev/vdc 2 $L"
