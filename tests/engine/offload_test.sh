#!/usr/bin/env bash
# Optimizer state on NVMe and on zero-optd servers, through real launches
# (zero-launch, UCX) of resume_rank:
#   offload_test.sh ZERO_LAUNCH RESUME_RANK RESUME_COMPARE ZERO_OPTD [lamb]
# Parts 1-4 below; with "lamb", part 5 alone (meson: engine-offload-lamb).
# 1. Same bits: at stages 1-3 at world size 2 (both fp32 and bf16 at stage 3)
#    and stages 2-3 at world size 1, 8 steps with
#    the state on NVMe (sub_group_size 100: many ranges per step) and on
#    zero-optd (one server at world 1, two at world 2) end in the same
#    checkpoint (masters, moments, counters) and the same trainer-visible
#    weights as the state in the rank.
# 2. Checkpoints cross stores: saved at step 4 with one store, resumed to step
#    8 with another (host -> nvme -> remote -> host), bit for bit; and at
#    another world size and stage (nvme W=2 -> remote W=1, remote W=1 -> nvme
#    W=2), within 1e-4 of an uninterrupted run (the reductions sum in another
#    order, as in resume_test.sh).
# 3. Errors: a missing nvme_path, stage 0, a missing directory, a full disk, a
#    dead server and a stopped one are clear errors naming what failed, and the
#    checkpoint saved before still resumes exactly.
# 4. World size 3 with two servers (stages 2 and 3): the same bits as the state
#    in the rank; a rank killed mid-job is reported by zero-launch, the servers
#    serve on, and the job resumes from its checkpoint bit for bit; and (root
#    only) the servers in another network namespace, reached over TCP.
# 5. Lamb on the servers (LAMB1/LAMB2, docs/optd.md): stages 1-3 at world
#    sizes 1-3 (and fp16 with its skipped steps at world 2), each with one
#    and with two servers, the same bits as the state in the rank; checkpoints saved with zero-optd resume in the rank
#    and back, bit for bit, and at another world size and stage within 1e-4.
set -u
launch=$1 rank_prog=$2 compare=$3 optd=$4 part=${5:-main}
work=$(mktemp -d)
servers=()
mounted=""
netns=()
cleanup() {
  for p in "${servers[@]}"; do kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for n in "${netns[@]}"; do ip netns del "$n" 2>/dev/null; done
  [ -n "$mounted" ] && umount "$mounted" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
ZERO_JOB_TOKEN=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
export ZERO_JOB_TOKEN
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

start_server() {   # start_server NAME: starts zero-optd, sets $port
  rm -f "$work/$1.port"
  "$optd" --listen 127.0.0.1:0 --port-file "$work/$1.port" >"$work/$1.log" 2>&1 &
  servers+=($!)
  server_pid=$!
  for _ in $(seq 1 100); do [ -s "$work/$1.port" ] && break; sleep 0.1; done
  port=$(cat "$work/$1.port" 2>/dev/null)
  [ -n "$port" ] || { echo "offload_test: zero-optd did not start"; cat "$work/$1.log"; exit 1; }
}
start_server s1; port1=$port
start_server s2; port2=$port

extra() {   # extra STORE WORLD: the zero_optimization members for STORE
  case $1 in
    host) echo "" ;;
    nvme) mkdir -p "$work/nvme"
          echo "\"offload_optimizer\": {\"device\": \"nvme\", \"nvme_path\": \"$work/nvme\"}, \"sub_group_size\": 100," ;;
    # remote: one server at world 1, two above; remote1, remote2: that many
    remote*) if [ "$1" = remote1 ] || { [ "$1" = remote ] && [ "$2" -eq 1 ]; }; then s="\"127.0.0.1:$port1\""
             else s="\"127.0.0.1:$port1\", \"127.0.0.1:$port2\""; fi
             echo "\"offload_optimizer\": {\"device\": \"remote\", \"servers\": [$s]}," ;;
  esac
}
# run is called inside $(...), a subshell: its failure cannot count in $fails,
# and its stdout is the digest. So a failed launch goes to stderr and to
# $work/failed, which the end of the script prints and counts.
run() {   # run STORE WORLD DIR STAGE DTYPE STOP: prints rank 0's weights digest
  local out
  out=$(RESUME_ZERO_EXTRA=$(extra "$1" "$2") "$launch" --launcher local --num_gpus "$2" --master_port 0 \
        "$rank_prog" "$3" "$4" "$5" "$6" 2>"$work/last.err") || {
    { echo "FAIL: launch $1 world $2 stage $4 $5 to step $6"; sed 's/^/  /' "$work/last.err" | tail -5; } |
      tee -a "$work/failed" >&2
    return 1; }
  echo "$out" | sed -n 's/.*weights=\([0-9a-f]*\).*/\1/p'
}
ref_run() {   # ref_run WORLD DIR STAGE DTYPE: the host store's run to step 8, once per DIR; prints its digest
  [ -s "$2.digest" ] || run host "$1" "$2" "$3" "$4" 8 >"$2.digest" || { rm -f "$2.digest"; return 1; }
  cat "$2.digest"
}
same() {   # same WHAT DIR_A DIR_B DIGEST_A DIGEST_B [RTOL]
  if "$compare" "$2" "$3" ${6:-} >/dev/null && { [ -n "${6:-}" ] || [ "$4" = "$5" ]; }; then
    echo "ok: $1"
  else
    "$compare" "$2" "$3" ${6:-} | tail -3; echo "  weights $4 vs $5"; fail "$1"
  fi
}

# each STORE's run to step 8 ends where the host store's does
same_as_host() {   # same_as_host LABEL "STORE..." "STAGE WORLD DTYPE"...
  local label=$1 stores=$2 case stage world dt ref dref d store
  shift 2
  for case in "$@"; do
    set -- $case
    stage=$1 world=$2 dt=$3
    ref=$work/ref-$stage-$world-$dt
    dref=$(ref_run "$world" "$ref" "$stage" "$dt") || continue
    for store in $stores; do
      d=$(run "$store" "$world" "$work/$store-$stage-$world-$dt" "$stage" "$dt" 8) || continue
      same "$label$store store = host store, stage $stage, world $world, $dt" "$ref" \
        "$work/$store-$stage-$world-$dt" "$dref" "$d"
    done
  done
}
# a checkpoint saved with one store resumes with another
chain() {   # chain FROM TO STAGE WORLD DTYPE
  local dir=$work/chain-$1-$2-$3-$4-$5 ref=$work/ref-$3-$4-$5 dref d
  dref=$(ref_run "$4" "$ref" "$3" "$5") || return
  run "$1" "$4" "$dir" "$3" "$5" 4 >/dev/null || return
  d=$(run "$2" "$4" "$dir" "$3" "$5" 8) || return
  same "saved with $1, resumed with $2, stage $3, world $4, $5" "$ref" "$dir" "$dref" "$d"
}
reshard() {   # reshard FROM W1 S1 TO W2 S2 (fp32)
  local dir=$work/reshard-$1-$2-$3-$4-$5-$6 ref=$work/rref-$5-$6
  ref_run "$5" "$ref" "$6" fp32 >/dev/null || return
  run "$1" "$2" "$dir" "$3" fp32 4 >/dev/null || return
  run "$4" "$5" "$dir" "$6" fp32 8 >/dev/null || return
  same "saved with $1 at world $2 stage $3, resumed with $4 at world $5 stage $6" "$ref" "$dir" x x 1e-4
}
# launches that failed inside a command substitution (see run); the end of the script
finish() {
  if [ -s "$work/failed" ]; then
    echo "launches that failed:"; cat "$work/failed"; fails=$((fails + $(grep -c '^FAIL' "$work/failed")))
  fi
  echo "offload_test: $fails failure(s)"
  [ "$fails" -eq 0 ]
}

# 5. Lamb on the servers
if [ "$part" = lamb ]; then
  export RESUME_OPTIMIZER=Lamb
  same_as_host "Lamb: " "remote1 remote2" "1 1 bf16" "2 1 fp32" "3 1 bf16" "1 2 fp32" "2 2 bf16" "3 2 bf16" \
    "2 2 fp16" "1 3 bf16" "2 3 fp32" "3 3 bf16"
  chain host remote2 2 2 bf16
  chain remote2 host 3 3 bf16
  chain remote1 remote2 3 1 bf16
  reshard remote2 2 2 remote2 3 3
  finish
  exit
fi

# 1. the same bits as the state in the rank
same_as_host "" "nvme remote" "1 2 fp32" "2 2 bf16" "3 2 fp32" "3 2 bf16" "2 1 bf16" "3 1 fp32"

# 2. a checkpoint saved with one store resumes with another
chain host nvme 2 2 bf16
chain nvme remote 2 2 bf16
chain remote host 2 2 bf16
chain host remote 3 1 fp32
chain remote nvme 3 1 fp32
chain nvme host 1 2 fp32
reshard nvme 2 1 remote 1 3
reshard remote 1 2 nvme 2 3

# 3. errors: clear, and nothing lost
expect_error() {   # expect_error WHAT PATTERN STORE_EXTRA STAGE [DIR]
  local dir=${5:-$work/err-$RANDOM}
  if RESUME_ZERO_EXTRA=$3 "$launch" --launcher local --num_gpus 1 --master_port 0 "$rank_prog" "$dir" "$4" bf16 8 \
       >/dev/null 2>"$work/err.log"; then
    fail "$1: the run succeeded"
  elif grep -q -- "$2" "$work/err.log"; then
    echo "ok: $1 is an error naming '$2'"
  else
    fail "$1: no error naming '$2'"; tail -5 "$work/err.log"
  fi
}
expect_error "nvme without nvme_path" "nvme_path" '"offload_optimizer": {"device": "nvme"},' 2
expect_error "nvme at stage 0" "stage 1, 2 or 3" "\"offload_optimizer\": {\"device\": \"nvme\", \"nvme_path\": \"$work\"}," 0
expect_error "a missing nvme directory" "$work/no-such-dir" \
  "\"offload_optimizer\": {\"device\": \"nvme\", \"nvme_path\": \"$work/no-such-dir\"}," 2
# the checkpoint every failed resume below starts from, and where it must end
saved=$work/saved
dsaved=$(ref_run 1 "$work/ref-2-1-bf16" 2 bf16)
run host 1 "$saved" 2 bf16 4 >/dev/null
mkdir -p "$work/full"
if mount -t tmpfs -o size=4k tmpfs "$work/full" 2>/dev/null; then
  mounted=$work/full
  expect_error "a full nvme directory" "$work/full" \
    "\"offload_optimizer\": {\"device\": \"nvme\", \"nvme_path\": \"$work/full\"}," 2 "$saved"
  umount "$work/full"; mounted=""
else
  echo "skip: a full nvme directory (cannot mount a tmpfs without root)"
fi
start_server dead; kill "$server_pid"; wait "$server_pid" 2>/dev/null
expect_error "a dead server" "127.0.0.1:$port" \
  "\"offload_optimizer\": {\"device\": \"remote\", \"servers\": [\"127.0.0.1:$port\"]}," 2 "$saved"
start_server stopped; kill -STOP "$server_pid"
t0=$(date +%s)
export ZERO_COMM_TIMEOUT=3
expect_error "a stopped server" "127.0.0.1:$port" \
  "\"offload_optimizer\": {\"device\": \"remote\", \"servers\": [\"127.0.0.1:$port\"]}," 2 "$saved"
echo "  (reported after $(( $(date +%s) - t0 )) s with ZERO_COMM_TIMEOUT=3)"
unset ZERO_COMM_TIMEOUT
kill -CONT "$server_pid"
d=$(run remote 1 "$saved" 2 bf16 8) && same "after the errors, the checkpoint resumes exactly" "$work/ref-2-1-bf16" \
  "$saved" "$dsaved" "$d"

# 4. world size 3, two servers
for case in "2 3 bf16" "3 3 fp32"; do
  set -- $case
  ref=$work/ref-$1-$2-$3
  dref=$(ref_run "$2" "$ref" "$1" "$3") || continue
  d=$(run remote "$2" "$work/remote-$1-$2-$3" "$1" "$3" 8) &&
    same "remote store = host store, stage $1, world $2, $3, two servers" "$ref" "$work/remote-$1-$2-$3" "$dref" "$d"
done
# a killed rank: saved at step 4, rank 2 killed in step 6 of the resumed run
killed=$work/killed
if run remote 3 "$killed" 2 bf16 4 >/dev/null; then
  if RESUME_KILL=2:6 RESUME_ZERO_EXTRA=$(extra remote 3) "$launch" --launcher local --num_gpus 3 --master_port 0 \
       --term_grace 2 "$rank_prog" "$killed" 2 bf16 8 >/dev/null 2>"$work/killed.err"; then
    fail "a killed rank: the job succeeded"
  elif grep -q "rank 2 .*was killed by signal 9" "$work/killed.err"; then
    echo "ok: a killed rank is reported by zero-launch"
  else
    fail "a killed rank: zero-launch did not name it"; tail -5 "$work/killed.err"
  fi
  kill -0 "${servers[0]}" 2>/dev/null && kill -0 "${servers[1]}" 2>/dev/null || fail "a killed rank took a server down"
  d=$(run remote 3 "$killed" 2 bf16 8) &&
    same "after a killed rank, the job resumes with the same servers exactly" "$work/ref-2-3-bf16" "$killed" \
      "$(cat "$work/ref-2-3-bf16.digest")" "$d"
fi
# the servers in another network namespace, the ranks talk to them over TCP
if [ "$(id -u)" -eq 0 ] && command -v ip >/dev/null 2>&1 && ip netns add "zot1_$$" 2>/dev/null; then
  netns+=("zot1_$$")
  ip netns add "zot2_$$" && netns+=("zot2_$$")
  net="10.234.$(( $$ % 200 + 20 ))"
  if ip link add "zta$$" type veth peer name "ztb$$" && ip link set "zta$$" netns "zot1_$$" &&
     ip link set "ztb$$" netns "zot2_$$" && ip -n "zot1_$$" addr add "$net.1/24" dev "zta$$" &&
     ip -n "zot2_$$" addr add "$net.2/24" dev "ztb$$" && ip -n "zot1_$$" link set "zta$$" up &&
     ip -n "zot2_$$" link set "ztb$$" up && ip -n "zot1_$$" link set lo up; then
    tcp_servers=""
    for i in 1 2; do
      rm -f "$work/ns$i.port"
      ip netns exec "zot2_$$" env UCX_TLS=tcp UCX_NET_DEVICES="ztb$$" \
        "$optd" --listen "$net.2:0" --port-file "$work/ns$i.port" >"$work/ns$i.log" 2>&1 &
      servers+=($!)
      for _ in $(seq 1 100); do [ -s "$work/ns$i.port" ] && break; sleep 0.1; done
      tcp_servers="$tcp_servers${tcp_servers:+, }\"$net.2:$(cat "$work/ns$i.port" 2>/dev/null)\""
    done
    out=$(RESUME_ZERO_EXTRA="\"offload_optimizer\": {\"device\": \"remote\", \"servers\": [$tcp_servers]}," \
          ip netns exec "zot1_$$" env UCX_TLS=tcp UCX_NET_DEVICES=all "$launch" --launcher local --num_gpus 3 \
          --master_port 0 "$rank_prog" "$work/tcp-3-3-fp32" 3 fp32 8 2>"$work/tcp.err") ||
      { fail "world 3 over TCP between namespaces"; tail -5 "$work/tcp.err"; }
    d=$(echo "$out" | sed -n 's/.*weights=\([0-9a-f]*\).*/\1/p')
    [ -n "$d" ] && same "remote store over TCP between network namespaces = host store, stage 3, world 3, fp32" \
      "$work/ref-3-3-fp32" "$work/tcp-3-3-fp32" "$(cat "$work/ref-3-3-fp32.digest")" "$d"
  else
    echo "skip: over TCP between network namespaces (cannot set up the veth pair)"
  fi
else
  echo "skip: over TCP between network namespaces (needs root and iproute2)"
fi

finish
