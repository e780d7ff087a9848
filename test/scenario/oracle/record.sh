#!/bin/bash
# record.sh [NAME ...] - run this folder's oracle scenarios (NAME.sh) in the oracle VM and record NAME.out,
# as ../shared/oracle/make-reference.sh does for its own scenarios: fresh zeroed images as the "#@ disks:"
# line declares (sizes in /dev/vda, vdb, ... order), the scenario's output, its exit status.
# Needs ../shared/oracle beside the repository (ORACLE_DIR overrides). Slow: 20-90 s per scenario under TCG.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ORACLE=${ORACLE_DIR:-$HERE/../../../../shared/oracle}
[ -x "$ORACLE/run.sh" ] || { echo "no oracle at $ORACLE" >&2; exit 2; }
export ORACLE_TIMEOUT=${ORACLE_TIMEOUT:-180}
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || for s in "$HERE"/*.sh; do n=${s##*/}; [ "$n" = record.sh ] || NAMES+=("${n%.sh}"); done
fail=0
for n in "${NAMES[@]}"; do
    s=$HERE/$n.sh
    D=$(mktemp -d "${TMPDIR:-/tmp}/umirror-oracle-$n.XXXXXX")
    imgs=(); i=0
    for size in $(sed -n 's/^#@ disks://p' "$s"); do
        f=$D/vd$(printf "\\$(printf %03o $((97 + i)))").img
        truncate -s "$size" "$f"; imgs+=("$f"); i=$((i + 1))
    done
    t0=$(date +%s)
    {
        echo "# reference output of test/scenario/oracle/$n.sh (kernel $(cat "${ORACLE_BUILD:-/tmp/oracle-build}/kernel-version"))"
        echo "# regenerate: test/scenario/oracle/record.sh $n"
        "$ORACLE/run.sh" "$s" "${imgs[@]}"
        echo
        echo "# scenario exit status: $?"
    } > "$HERE/$n.out.tmp"
    rm -rf "$D"
    rc=$(sed -n 's/^# scenario exit status: //p' "$HERE/$n.out.tmp")
    echo "$n: exit $rc, $(( $(date +%s) - t0 )) s" >&2
    if [ "$rc" = 0 ]; then mv "$HERE/$n.out.tmp" "$HERE/$n.out"; else fail=1; fi
done
exit $fail
