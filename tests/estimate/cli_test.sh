#!/bin/sh
# Runs the zero-estimate binary: output format, figures, --config, bad flags.
# usage: cli_test.sh ZERO_ESTIMATE_BINARY CONFIGS_DIR (tests/configs)
set -u
exe=$1
configs=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect FILE KEY=VALUE...: each key=value line is present exactly.
expect() {
  f=$1; shift
  for kv in "$@"; do
    grep -qx "$kv" "$f" || fail "$f: no line \"$kv\" (got: $(grep "^${kv%%=*}=" "$f"))"
  done
}

# The issue's usage: the ZeRO paper's P_os+g figure for 7.5B on 64 ranks.
"$exe" --params 7.5e9 --world-size 64 --stage 2 >"$tmp/s2" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] || fail "stage 2: exit $rc ($(cat "$tmp/err"))"
[ ! -s "$tmp/err" ] || fail "stage 2: unexpected stderr: $(cat "$tmp/err")"
expect "$tmp/s2" model_states_per_rank_gb=16.6 model_states_per_rank_bytes=16640625000 \
  baseline_per_rank_gb=120.0 stage=2 world_size=64 ranks_per_node=8 nodes=8 dtype=fp16 optimizer=Adam \
  optimizer_bytes_per_param=12 deepspeed_estimator=zero2 comm_paper_volume_elements=15000000000 \
  comm_bytes_per_rank=29531250000 bandwidth_gbps=50 comm_time_s=0.590625
grep -q '^Model states per rank (ZeRO paper; GB = 1e9 bytes)$' "$tmp/s2" || fail "stage 2: table header missing"
grep -q '^# key=value' "$tmp/s2" || fail "stage 2: key=value header missing"
# After the header, every line is key=value with a lower-case key.
sed '1,/^# key=value/d' "$tmp/s2" | grep -v '^[a-z0-9_]*=[^ ]*$' >"$tmp/odd"
[ ! -s "$tmp/odd" ] || fail "stage 2: lines after the header that are not key=value: $(cat "$tmp/odd")"
# Each key once.
sed '1,/^# key=value/d' "$tmp/s2" | cut -d= -f1 | sort | uniq -d >"$tmp/dup"
[ ! -s "$tmp/dup" ] || fail "stage 2: keys printed twice: $(cat "$tmp/dup")"

# Figure 1's other stages; the same count written three ways.
for s in "0 120.0" "1 31.4" "3 1.9"; do
  set -- $s
  "$exe" --params 7.5B --world-size=64 --stage "$1" >"$tmp/out" 2>&1 || fail "stage $1: exit $?"
  expect "$tmp/out" "model_states_per_rank_gb=$2"
done
"$exe" --params 7500000000 --world-size 64 --stage 2 >"$tmp/out" 2>&1
cmp -s "$tmp/out" "$tmp/s2" || fail "7500000000 and 7.5e9 differ"
# The trillion-parameter model on 1024 GPUs with P_os+g+p.
"$exe" --params 1T --world-size 1024 --stage 3 --largest-layer 1e9 >"$tmp/out" 2>&1 || fail "1T: exit $?"
expect "$tmp/out" model_states_per_rank_gb=15.6 nodes=128 deepspeed_estimator=zero3

# DeepSpeed's docs example (t5-3b on 8 GPUs), both offloaded.
"$exe" --params 2851M --largest-layer 32M --world-size 8 --stage 3 --offload-optimizer cpu \
  --offload-param cpu >"$tmp/out" 2>&1 || fail "t5-3b: exit $?"
expect "$tmp/out" deepspeed_cpu_per_node_gib=71.69 deepspeed_cpu_per_node_no_zero_init_gib=127.45 \
  deepspeed_gpu_per_rank_gib=0.12 offload_optimizer=cpu offload_param=cpu
# Without a config, DeepSpeed's defaults: buckets of 5e8, two in flight at stage 3 (overlap_comm).
expect "$tmp/s2" reduce_bucket_bytes=1000000000 allgather_bucket_bytes=1000000000
"$exe" --params 7.5e9 --world-size 64 --stage 3 --largest-layer 2e8 >"$tmp/out" 2>&1
expect "$tmp/out" reduce_bucket_bytes=2000000000 stage3_gathered_params_bytes=2000000000 \
  stage3_layer_grads_bytes=400000000 allgather_bucket_bytes=0 device_total_per_rank_bytes=6275000000
# The note on an unknown largest layer.
"$exe" --params 1e9 --world-size 8 --stage 3 >"$tmp/out" 2>&1
grep -q 'note: --largest-layer not given' "$tmp/out" || fail "no note for an unknown largest layer"
# World size 1: no communication, one rank per node by default.
"$exe" --params 1.3M >"$tmp/out" 2>&1 || fail "defaults: exit $?"
expect "$tmp/out" world_size=1 ranks_per_node=1 stage=0 comm_bytes_per_rank=0 deepspeed_estimator=none
# Optimizer and dtype choices change K.
"$exe" --params 1e9 --optimizer sgd-momentum --dtype bf16 >"$tmp/out" 2>&1
expect "$tmp/out" optimizer_bytes_per_param=8 dtype=bf16 optimizer=SGD-momentum
"$exe" --params 1e9 --optimizer ADAM --dtype fp32 >"$tmp/out" 2>&1
expect "$tmp/out" optimizer_bytes_per_param=8 dtype=fp32

# --config: a ZeRO-3 bf16 CPU-offload config.
"$exe" --config "$configs/zero3_bf16_cpu_offload.json" --params 7.5e9 --world-size 64 --largest-layer 2e8 \
  >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] || fail "zero3 config: exit $rc ($(cat "$tmp/err"))"
expect "$tmp/out" stage=3 dtype=bf16 optimizer=AdamW offload_optimizer=cpu offload_param=cpu grad_accum=8 \
  reduce_bucket_bytes=200000000 stage3_prefetch_bucket_bytes=100000000 stage3_gathered_params_bytes=2000000000 \
  model_states_per_rank_gb=1.9 comm_elements_per_step=180000000000
grep -q "config $configs/zero3_bf16_cpu_offload.json" "$tmp/out" || fail "zero3 config: the table does not name the config"
# Flags override the config.
"$exe" --config "$configs/zero3_bf16_cpu_offload.json" --params 7.5e9 --world-size 64 --offload-param none \
  --offload-optimizer none --dtype fp16 --grad-accum 1 >"$tmp/out" 2>&1 || fail "override: exit $?"
expect "$tmp/out" stage=3 dtype=fp16 offload_optimizer=none offload_param=none grad_accum=1
# Stage 2 below a config that offloads parameters: refused, naming both.
"$exe" --config "$configs/zero3_bf16_cpu_offload.json" --params 7.5e9 --world-size 64 --stage 2 \
  >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] || fail "stage 2 under an offload_param config: exit $rc, expected 2"
grep -q -- '--offload-param: cpu needs stage 3' "$tmp/err" && grep -q 'from --config' "$tmp/err" \
  || fail "stage 2 under an offload_param config: message: $(cat "$tmp/err")"
# A stage-2 fp16 config with its buckets; an fp32 stage-1 config; NVMe.
"$exe" --config "$configs/zero2_fp16_adam_warmup.json" --params 1e9 --world-size 4 >"$tmp/out" 2>&1 || fail "zero2 config: exit $?"
expect "$tmp/out" stage=2 dtype=fp16 reduce_bucket_bytes=200000000 allgather_bucket_bytes=100000000
"$exe" --config "$configs/zero1_fp32_adamw_accum.json" --params 7.5e9 --world-size 64 >"$tmp/out" 2>&1 || fail "zero1 config: exit $?"
expect "$tmp/out" stage=1 dtype=fp32 optimizer_bytes_per_param=8 model_states_per_rank_gb=60.9
"$exe" --config "$configs/zero3_nvme_bf16.json" --params 1e10 --world-size 16 >"$tmp/out" 2>&1 || fail "nvme config: exit $?"
# offload_param.max_in_cpu (DeepSpeed's default 1e9) keeps the whole 6.25e8-element partition in host memory
expect "$tmp/out" offload_optimizer=nvme offload_param=nvme host_model_states_per_rank_bytes=1250000000 \
  nvme_model_states_per_rank_bytes=7500000000
"$exe" --config "$configs/zero3_nvme_bf16.json" --params 1e10 --world-size 16 --max-in-cpu 0 >"$tmp/out" 2>&1 \
  || fail "nvme config, max_in_cpu 0: exit $?"
expect "$tmp/out" host_model_states_per_rank_bytes=0 nvme_model_states_per_rank_bytes=8750000000
"$exe" --config "$configs/zero3_nvme_bf16.json" --params 1e10 --world-size 16 --max-in-cpu 250M >"$tmp/out" 2>&1 \
  || fail "nvme config, max_in_cpu 250M: exit $?"
expect "$tmp/out" host_model_states_per_rank_bytes=500000000 nvme_model_states_per_rank_bytes=8250000000
"$exe" --params 1e9 --stage 3 --offload-param nvme --max-in-cpu -5 >"$tmp/out" 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- '--max-in-cpu' "$tmp/err" || fail "--max-in-cpu -5: not refused: $(cat "$tmp/err")"
# The world size a config's batch keys imply, when --world-size is not given.
printf '{"train_batch_size": 64, "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 4,\n "zero_optimization": {"stage": 1}}\n' >"$tmp/ws.json"
"$exe" --config "$tmp/ws.json" --params 1e9 >"$tmp/out" 2>&1 || fail "implied world size: exit $?"
expect "$tmp/out" world_size=8 grad_accum=4 stage=1
# Every config fixture is accepted.
for f in "$configs"/*.json; do
  "$exe" --config "$f" --params 1e9 --world-size 8 >/dev/null 2>"$tmp/err" || fail "$f refused: $(cat "$tmp/err")"
done
# A refused config and a missing file: exit 2, the problem on stderr.
printf '{"zero_optimization": {"stage": "two"}}' >"$tmp/bad.json"
"$exe" --config "$tmp/bad.json" --params 1e9 >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] || fail "bad config: exit $rc, expected 2"
grep -q 'zero_optimization.stage' "$tmp/err" || fail "bad config: the problem is not named: $(cat "$tmp/err")"
grep -q -- '--config' "$tmp/err" || fail "bad config: --config not named"
[ ! -s "$tmp/out" ] || fail "bad config: stdout not empty"
"$exe" --config "$tmp/missing.json" --params 1e9 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] || fail "missing config: exit $rc, expected 2"

# --help: exit 0, every option listed.
"$exe" --help >"$tmp/out" 2>&1 || fail "--help: exit $?"
for o in --params --largest-layer --world-size --ranks-per-node --stage --offload-optimizer --offload-param \
         --dtype --optimizer --grad-accum --bandwidth --config; do
  grep -q -- "$o" "$tmp/out" || fail "--help does not list $o"
done

# Each bad flag: exit 2, nothing on stdout, the flag named on stderr.
bad() {
  flag=$1; shift
  "$exe" "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  [ "$rc" -eq 2 ] || fail "$*: exit $rc, expected 2"
  [ ! -s "$tmp/out" ] || fail "$*: stdout not empty"
  grep -q -- "$flag" "$tmp/err" || fail "$*: stderr does not name $flag: $(cat "$tmp/err")"
}
bad --params
bad --params --world-size 8
bad --params --params abc
bad --params --params 0
bad --params --params -5
bad --params --params 7.5Q
bad --params --params=
bad --params --params 1e9 --params 2e9
bad --largest-layer --params 1e9 --largest-layer x
bad --largest-layer --params 1e9 --largest-layer 2e9
bad --world-size --params 1e9 --world-size 0
bad --world-size --params 1e9 --world-size 8x
bad --ranks-per-node --params 1e9 --world-size 8 --ranks-per-node 0
bad --ranks-per-node --params 1e9 --world-size 8 --ranks-per-node 16
bad --stage --params 1e9 --stage 4
bad --stage --params 1e9 --stage two
bad --stage --params 1e9 --stage
bad --offload-optimizer --params 1e9 --stage 2 --offload-optimizer gpu
bad --offload-optimizer --params 1e9 --stage 0 --offload-optimizer cpu
bad --offload-param --params 1e9 --stage 3 --offload-param disk
bad --offload-param --params 1e9 --stage 2 --offload-param cpu
bad --dtype --params 1e9 --dtype fp8
bad --optimizer --params 1e9 --optimizer adamax
bad --grad-accum --params 1e9 --grad-accum 0
bad --bandwidth --params 1e9 --bandwidth -1
bad --bandwidth --params 1e9 --bandwidth fast
bad --bandwidth --params 1e9 --bandwidth inf
bad --bogus --params 1e9 --bogus 3

if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "zero-estimate CLI: all checks passed"
