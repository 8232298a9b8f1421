#!/usr/bin/env bash
# bench/run comm: bandwidth of the host collectives (ucx backend) over sizes
# 4 KiB .. 256 MiB at world sizes 2, 3 and 4, as CSV with algbw and busbw
# (nccl-tests formulas), against raw UCX point-to-point bandwidth measured in
# the same run (bench_comm --p2p, world size 2). Where mpirun and the OSU
# micro-benchmarks are installed, OpenMPI's collectives are measured too.
# Results: bench/results/comm-<UTC time>.csv. Last line:
#   summary: reduce_scatter_busbw_over_p2p=<x> allgather_busbw_over_p2p=<y>
# Options: --quick (3 repetitions of the large sizes instead of 9), --max BYTES.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
reps=9
max=$((256 << 20))
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) reps=3; shift ;;
    --max) max=$2; shift 2 ;;
    *) echo "bench/run comm: unknown option $1" >&2; exit 2 ;;
  esac
done
bench_build bench/comm/bench_comm tools/zero-launch/zero-launch

# Loopback for UCX's network transports (as the tests); shared memory is
# chosen by UCX itself for ranks on one host. Nothing else is forced.
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
mkdir -p "$root/bench/results"
out="$root/bench/results/comm-$(date -u +%Y%m%dT%H%M%SZ).csv"
launch=("$build_dir/tools/zero-launch/zero-launch" --master_port 0)
bench="$build_dir/bench/comm/bench_comm"

echo "# bench comm: $(nproc) cores, $(uname -m), UCX $(pkg-config --modversion ucx 2>/dev/null || echo '?'), UCX_TLS=${UCX_TLS:-default}, UCX_NET_DEVICES=$UCX_NET_DEVICES"
echo "# baseline: raw UCX tag send/recv, rank 0 -> rank 1, with an 8-byte ack (op p2p)"
summary=""
first=1
for n in 2 3 4; do
  args=(--max "$max" --reps "$reps")
  [ "$n" -eq 2 ] && args+=(--p2p)
  while IFS= read -r line; do
    case "$line" in
      summary:*) summary=$line ;;
      op,*) if [ $first -eq 1 ]; then echo "$line"; echo "$line" > "$out"; first=0; fi ;;
      *) echo "$line"; echo "$line" >> "$out" ;;
    esac
  done < <("${launch[@]}" --num_gpus "$n" "$bench" "${args[@]}")
done

# OpenMPI's collectives, where they can be measured on this machine.
if command -v mpirun >/dev/null 2>&1; then
  found=0
  for t in osu_reduce_scatter osu_allgather osu_allreduce; do
    exe=$(command -v "$t" || true)
    [ -z "$exe" ] && continue
    found=1
    for n in 2 3 4; do
      echo "# openmpi $t, $n ranks (osu, sizes in bytes, latency in us)"
      mpirun --oversubscribe -np "$n" "$exe" -m 4096:"$max" 2>&1 | sed 's/^/# /'
    done
  done
  [ $found -eq 0 ] && echo "# openmpi: mpirun is installed but the OSU micro-benchmarks are not: skipped"
else
  echo "# openmpi: mpirun is not installed on this machine: skipped"
fi
echo "# results: ${out#$root/}"
if [ -z "$summary" ]; then
  echo "bench/run comm: no summary line (did the world-size-2 run fail?)" >&2
  exit 1
fi
echo "$summary"
