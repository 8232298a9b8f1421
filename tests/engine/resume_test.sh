#!/usr/bin/env bash
# Exact resume and resharding through real launches (zero-launch, UCX).
#   resume_test.sh ZERO_LAUNCH RESUME_RANK RESUME_COMPARE
# For each stage 0-3 at each world size 1-4 in each precision (fp32, bf16, fp16):
#   A: one job trains 8 optimizer steps and saves;
#   B: one job trains 4 steps and saves, a new job loads latest and trains to 8;
# the final checkpoints of A and B must agree bit for bit (weights, moments,
# counters, loss scaler, schedule). Then resharding: a first half saved at
# world size W / stage S continues at W' / S' and must match an uninterrupted
# run at W' / S' within a relative 1e-4 (fp32; the reductions sum in another order).
set -u
launch=$1 rank_prog=$2 compare=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
fails=0
run() {   # run WORLD DIR STAGE DTYPE STOP
  "$launch" --launcher local --num_gpus "$1" --master_port 0 "$rank_prog" "$2" "$3" "$4" "$5" >/dev/null || {
    echo "FAIL: launch world $1 stage $3 $4 to step $5 in $2"; fails=$((fails + 1)); return 1; }
}
for stage in 0 1 2 3; do
  for world in 1 2 3 4; do
   for dt in fp32 bf16 fp16; do
    a=$work/a-$stage-$world-$dt b=$work/b-$stage-$world-$dt
    run "$world" "$a" "$stage" "$dt" 8 || continue
    run "$world" "$b" "$stage" "$dt" 4 || continue
    run "$world" "$b" "$stage" "$dt" 8 || continue
    if "$compare" "$a" "$b" >/dev/null; then
      echo "ok: exact resume, stage $stage, world $world, $dt"
    else
      "$compare" "$a" "$b"; echo "FAIL: exact resume, stage $stage, world $world, $dt"; fails=$((fails + 1))
    fi
   done
  done
done
# resharding: save at (world, stage), continue at (world', stage'), compare with an
# uninterrupted run at world': every pair of different world sizes 1-4, each with
# a change of stage as well
pairs=()
for w1 in 1 2 3 4; do
  for w2 in 1 2 3 4; do
    [ "$w1" -eq "$w2" ] && continue
    s1=$(((w1 + w2) % 4)); s2=$(((s1 + 1 + w1 % 3) % 4))
    pairs+=("$w1 $s1 $w2 $s2")
  done
done
for pair in "${pairs[@]}"; do
  set -- $pair
  w1=$1 s1=$2 w2=$3 s2=$4
  ref=$work/ref-$w2-$s2 r=$work/reshard-$w1-$s1-$w2-$s2
  [ -d "$ref" ] || run "$w2" "$ref" "$s2" fp32 8 || continue
  run "$w1" "$r" "$s1" fp32 4 || continue
  run "$w2" "$r" "$s2" fp32 8 || continue
  if "$compare" "$ref" "$r" 1e-4 >/dev/null; then
    echo "ok: resharded world $w1 stage $s1 -> world $w2 stage $s2"
  else
    "$compare" "$ref" "$r" 1e-4; echo "FAIL: resharded world $w1 stage $s1 -> world $w2 stage $s2"; fails=$((fails + 1))
  fi
done
echo "resume_test: $fails failure(s)"
[ "$fails" -eq 0 ]
