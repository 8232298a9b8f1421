#!/usr/bin/env bash
# Stage-3 parameter shards on NVMe (offload_param.device "nvme", host ranks),
# through real launches (zero-launch, UCX) of resume_rank:
#   param_offload_test.sh ZERO_LAUNCH RESUME_RANK RESUME_COMPARE
# 1. Same bits: at stage 3, world sizes 1 and 2, fp32 / bf16 / fp16 (whose
#    first steps overflow and are skipped), 8 steps with 12 / W micro-batches
#    each, the shards in a file with small buffers (buffer_size 37: every
#    shard takes several windows, and bf16 windows start on odd elements)
#    end in the same checkpoint (masters, moments, counters) and the same
#    trainer-visible weights as the shards in memory; and with Lamb (its
#    second phase writes the weights). Also with the optimizer
#    state on NVMe too, with max_in_cpu 301 (the shard's head in memory,
#    windows across the split), with the default max_in_cpu (1e9: this
#    model's shards stay in memory, as in DeepSpeed), and with
#    offload_param "cpu" (a no-op on host ranks). The other runs set
#    max_in_cpu 0, so that the shards are all in the file.
# 2. Resume: saved at step 4 and resumed to step 8 with the shards on NVMe,
#    and saved without offload_param and resumed with it (and the reverse):
#    bit for bit the uninterrupted run.
# 3. Config: below stage 3 offload_param is ignored with a warning, as
#    DeepSpeed ignores it, and the run is bit for bit the run without it; a
#    missing nvme_path, a missing directory and the remote optimizer store
#    with it are clear errors, and nothing is lost.
set -u
launch=$1 rank_prog=$2 compare=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
mkdir -p "$work/pnvme" "$work/onvme"

extra() {   # extra KIND: the zero_optimization members
  case $1 in
    host) echo "" ;;
    pnvme) echo "\"offload_param\": {\"device\": \"nvme\", \"nvme_path\": \"$work/pnvme\", \"buffer_size\": 37, \"buffer_count\": 3, \"max_in_cpu\": 0}," ;;
    both) echo "\"offload_param\": {\"device\": \"nvme\", \"nvme_path\": \"$work/pnvme\", \"buffer_size\": 37, \"max_in_cpu\": 0}, \"offload_optimizer\": {\"device\": \"nvme\", \"nvme_path\": \"$work/onvme\"}, \"sub_group_size\": 100," ;;
    # the first 301 elements of the shard in memory (300 in 16 bits: a whole word), the rest in the file
    pmix) echo "\"offload_param\": {\"device\": \"nvme\", \"nvme_path\": \"$work/pnvme\", \"buffer_size\": 37, \"buffer_count\": 3, \"max_in_cpu\": 301}," ;;
    # DeepSpeed's default max_in_cpu (1e9): this small model's shards stay in memory, no file
    pdef) echo "\"offload_param\": {\"device\": \"nvme\", \"nvme_path\": \"$work/pnvme\"}," ;;
    pcpu) echo "\"offload_param\": {\"device\": \"cpu\"}," ;;
  esac
}
run() {   # run KIND WORLD DIR STAGE DTYPE STOP: prints rank 0's weights digest (a failure: in $work/failed)
  local out
  out=$(RESUME_ZERO_EXTRA=$(extra "$1") "$launch" --launcher local --num_gpus "$2" --master_port 0 \
        "$rank_prog" "$3" "$4" "$5" "$6" 2>"$work/last.err") || {
    { echo "FAIL: launch $1 world $2 stage $4 $5 to step $6"; tail -5 "$work/last.err"; } >>"$work/failed"; return 1; }
  echo "$out" | sed -n 's/.*weights=\([0-9a-f]*\).*/\1/p'
}
ref_run() {   # ref_run WORLD DIR STAGE DTYPE: the in-memory run to step 8, once per DIR; prints its digest
  [ -s "$2.digest" ] || run host "$1" "$2" "$3" "$4" 8 >"$2.digest" || { rm -f "$2.digest"; return 1; }
  cat "$2.digest"
}
same() {   # same WHAT DIR_A DIR_B DIGEST_A DIGEST_B
  if "$compare" "$2" "$3" >/dev/null && [ -n "$4" ] && [ "$4" = "$5" ]; then
    echo "ok: $1"
  else
    "$compare" "$2" "$3" | tail -3; echo "  weights $4 vs $5"; fail "$1"
  fi
}

# 1. the same bits as the shards in memory
for case in "1 fp32" "1 bf16" "2 fp32" "2 bf16" "2 fp16"; do
  set -- $case
  world=$1 dt=$2
  ref=$work/ref-$world-$dt
  dref=$(ref_run "$world" "$ref" 3 "$dt") || continue
  d=$(run pnvme "$world" "$work/pnvme-$world-$dt" 3 "$dt" 8) || continue
  same "offload_param nvme = in memory, world $world, $dt" "$ref" "$work/pnvme-$world-$dt" "$dref" "$d"
done
export RESUME_OPTIMIZER=Lamb
dref=$(ref_run 2 "$work/ref-lamb-2-bf16" 3 bf16) &&
  d=$(run pnvme 2 "$work/pnvme-lamb-2-bf16" 3 bf16 8) &&
  same "offload_param nvme = in memory, Lamb, world 2, bf16" "$work/ref-lamb-2-bf16" "$work/pnvme-lamb-2-bf16" \
    "$dref" "$d"
unset RESUME_OPTIMIZER
dref=$(ref_run 2 "$work/ref-2-bf16" 3 bf16)
d=$(run both 2 "$work/both-2-bf16" 3 bf16 8) &&
  same "offload_param and offload_optimizer nvme = in memory, world 2, bf16" "$work/ref-2-bf16" "$work/both-2-bf16" \
    "$dref" "$d"
dref=$(ref_run 2 "$work/ref-2-bf16" 3 bf16) &&
  d=$(run pmix 2 "$work/pmix-2-bf16" 3 bf16 8) &&
  same "offload_param nvme with max_in_cpu 301 (shards part in memory, part in the file) = in memory, world 2, bf16" \
    "$work/ref-2-bf16" "$work/pmix-2-bf16" "$dref" "$d"
dref=$(ref_run 1 "$work/ref-1-fp32" 3 fp32) &&
  d=$(run pdef 1 "$work/pdef-1-fp32" 3 fp32 8) &&
  same "offload_param nvme with the default max_in_cpu (all in memory) = in memory, world 1, fp32" \
    "$work/ref-1-fp32" "$work/pdef-1-fp32" "$dref" "$d"
d=$(run pcpu 1 "$work/pcpu-1-bf16" 3 bf16 8) &&
  same "offload_param cpu (a no-op on host ranks) = in memory, world 1, bf16" "$work/ref-1-bf16" \
    "$work/pcpu-1-bf16" "$(cat "$work/ref-1-bf16.digest")" "$d"
[ "$(ls -A "$work/pnvme")" = "" ] && echo "ok: no parameter file is left behind" ||
  fail "files left in the nvme_path: $(ls "$work/pnvme")"

# 2. resume
chain() {   # chain FROM TO WORLD DTYPE
  local dir=$work/chain-$1-$2-$3-$4 ref=$work/ref-$3-$4 d
  run "$1" "$3" "$dir" 3 "$4" 4 >/dev/null || return
  d=$(run "$2" "$3" "$dir" 3 "$4" 8) || return
  same "saved with $1 at step 4, resumed with $2 to step 8, world $3, $4" "$ref" "$dir" "$(cat "$ref.digest")" "$d"
}
chain pnvme pnvme 2 bf16
chain host pnvme 1 fp32
chain pnvme host 2 fp16

# 3. config
dref=$(run host 1 "$work/s2-ref" 2 bf16 8)
out=$(RESUME_ZERO_EXTRA=$(extra pnvme) "$launch" --launcher local --num_gpus 1 --master_port 0 \
      "$rank_prog" "$work/s2-pnvme" 2 bf16 8 2>"$work/s2.err") || fail "stage 2 with offload_param: $(tail -3 "$work/s2.err")"
if grep -q "offload_param: ignored" "$work/s2.err"; then echo "ok: offload_param at stage 2 warns that it is ignored"
else fail "offload_param at stage 2: no warning"; fi
same "offload_param at stage 2 = without it" "$work/s2-ref" "$work/s2-pnvme" "$dref" \
  "$(echo "$out" | sed -n 's/.*weights=\([0-9a-f]*\).*/\1/p')"
expect_error() {   # expect_error WHAT PATTERN EXTRA [DIR]
  local dir=${4:-$work/err-$RANDOM}
  if RESUME_ZERO_EXTRA=$3 "$launch" --launcher local --num_gpus 1 --master_port 0 "$rank_prog" "$dir" 3 bf16 8 \
       >/dev/null 2>"$work/err.log"; then
    fail "$1: the run succeeded"
  elif grep -q -- "$2" "$work/err.log"; then
    echo "ok: $1 is an error naming '$2'"
  else
    fail "$1: no error naming '$2'"; tail -5 "$work/err.log"
  fi
}
saved=$work/saved
run pnvme 1 "$saved" 3 bf16 4 >/dev/null
expect_error "offload_param nvme without nvme_path" "offload_param.nvme_path" \
  '"offload_param": {"device": "nvme"},' "$saved"
expect_error "a missing parameter directory" "$work/no-such-dir" \
  "\"offload_param\": {\"device\": \"nvme\", \"nvme_path\": \"$work/no-such-dir\"}," "$saved"
expect_error "offload_param nvme with the remote optimizer store" "offload_optimizer.device \"remote\"" \
  "\"offload_param\": {\"device\": \"nvme\", \"nvme_path\": \"$work/pnvme\"}, \"offload_optimizer\": {\"device\": \"remote\", \"servers\": [\"127.0.0.1:1\"]}," \
  "$saved"
d=$(run pnvme 1 "$saved" 3 bf16 8) &&
  same "after the errors, the checkpoint resumes exactly" "$work/ref-1-bf16" "$saved" \
    "$(cat "$work/ref-1-bf16.digest")" "$d"

# launches that failed inside a command substitution
if [ -s "$work/failed" ]; then cat "$work/failed"; fails=$((fails + $(grep -c '^FAIL' "$work/failed"))); fi
echo "param_offload_test: $fails failure(s)"
[ "$fails" -eq 0 ]
