#!/usr/bin/env bash
# Quick hot-path comparison: fio (nbd engine, QD16) against `umirror serve` (2-leg mirror, core or disk
# log) and, back to back in the same run, against qemu-nbd on one file. Prints MiB/s or IOPS and the
# ratio to qemu-nbd. Not part of npm test; the full comparison bench is bench/nbd-bench.ts.
#
#   bash bench/perf-quick.sh [RUNTIME_S] [WORKLOADS] [LOGS] [ROUNDS]
#   e.g. bash bench/perf-quick.sh 8 "randread randwrite" "core disk core@/tmp/base" 2
# Env: PERF_DIR (default /tmp/perf: leg0.img leg1.img q.img, 1 GiB each, and log.img), UMIRROR_ARGS.
set -euo pipefail
runtime=${1:-8}
workloads=${2:-"read write randread randwrite"}
logs=${3:-"core disk"}
rounds=${4:-1}
dir=${PERF_DIR:-/tmp/perf}
root=$(cd "$(dirname "$0")/.." && pwd)
sock=$dir/nbd.sock
size=$(stat -c %s "$dir/leg0.img")
sectors=$((size / 512))

bs_of() { case $1 in rand*) echo 4k ;; *) echo 1M ;; esac; }

run_fio() { # workload -> prints "value unit"
  local wl=$1 bs
  bs=$(bs_of "$wl")
  fio --name=x --ioengine=nbd --uri="nbd+unix:///?socket=$sock" --rw="$wl" --bs="$bs" --iodepth=16 \
    --runtime="$runtime" --time_based --size="$size" --output-format=json 2>/dev/null |
    node -e '
      const t = require("fs").readFileSync(0, "utf8"); const j = JSON.parse(t.slice(t.indexOf("{"))).jobs[0];
      const rw = process.argv[1].includes("read") ? j.read : j.write;
      const v = process.argv[2] === "4k" ? `${Math.round(rw.iops)} iops` : `${(rw.bw_bytes / 2 ** 20).toFixed(0)} MiB/s`;
      console.log(`${v} ${rw.total_ios}`);
    ' "$wl" "$bs"
}

wait_sock() { for _ in $(seq 100); do [ -S "$sock" ] && return 0; sleep 0.05; done; echo "no socket" >&2; return 1; }

start_qemu() { sync; rm -f "$sock"; qemu-nbd -f raw -t -k "$sock" -e 4 "$dir/q.img" & pid=$!; wait_sock; }
start_umirror() { # core|disk[@ROOT] (ROOT: another checkout's build, to compare against)
  local log=${1%%@*} build=$root logwords
  [ "$1" != "$log" ] && build=${1#*@}
  sync; rm -f "$sock"
  if [ "$log" = core ]; then logwords="core 2 1024 nosync"; else logwords="disk 3 $dir/log.img 1024 nosync"; fi
  node ${NODE_FLAGS:-} "$build/dist/cli/main.js" serve --quiet --nbd "unix:$sock" ${UMIRROR_ARGS:-} \
    --table "0 $sectors mirror $logwords 2 $dir/leg0.img 0 $dir/leg1.img 0 1 handle_errors" >/dev/null 2>&1 &
  pid=$!
  wait_sock
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
# Server CPU per request in microseconds (user + system): a figure that other load on the machine
# disturbs much less than throughput.
cpu_us_per_op() { node -e 'console.log(((process.argv[1] - process.argv[2]) * 1e4 / process.argv[3]).toFixed(1))' "$(cpu_ticks)" "$1" "$2"; }
stop() { kill -INT "$pid"; wait "$pid" || true; }
measure() { # workload -> "value unit cpu_us/op"
  local t0 r ios
  t0=$(cpu_ticks)
  r=$(run_fio "$1")
  ios=${r##* }
  echo "${r% *} $(cpu_us_per_op "$t0" "$ios")us/op"
}

for round in $(seq "$rounds"); do
  for wl in $workloads; do
    start_qemu; q=$(measure "$wl"); stop
    line="round $round  $wl $(bs_of "$wl")  qemu-nbd $q"
    for log in $logs; do
      start_umirror "$log"; u=$(measure "$wl"); stop
      ratio=$(node -e 'console.log((parseFloat(process.argv[1]) / parseFloat(process.argv[2])).toFixed(2))' "$u" "$q")
      line="$line | $log $u ${ratio}x"
    done
    echo "$line"
  done
done
