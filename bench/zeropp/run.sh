#!/usr/bin/env bash
# bench/run zeropp: ZeRO++ over an emulated two-node link.
#
# Two network namespaces (the nodes) joined by a veth pair shaped with tc to
# $ZPP_RATE (default 10gbit) in each direction; an sshd in each; zero-launch in
# the first with a hostfile of both, two ranks per node. Each node's sshd, and
# so its ranks, also has its own IPC, PID and mount namespace, as a separate
# machine would: UCX 1.13's shared-memory transports check the IPC and PID
# namespaces, so with the job's UCX_TLS=$ZPP_TLS (default sm,self,tcp) the
# ring hops inside a node use shared memory and only the hops between the
# nodes take TCP over the shaped veth. (Until round 6 the job ran on
# UCX_TLS=tcp with one IPC namespace, so plain ZeRO-3's hops inside a node
# went over loopback TCP and cost CPU that real nodes do not spend.) The
# node communicators of hpZ and of qgZ's first level (zero_comm_split,
# members on one node) use ZERO_COMM_NODE_UCX_TLS=$ZPP_NODE_TLS (default
# sm,self); qgZ's second level spans the nodes and takes the veth.
#
# The model: the example GPT (examples/gpt/train_gpt, bf16, stage 3, every
# parameter partitioned), by default 768 wide, 2 layers, context 2, micro-batch
# 1 per rank (14.2 M parameters, 28 MB of bf16 weights): many parameters for
# little compute, so that a step's bytes are as large as they can be next to
# its arithmetic. What is left of the step is per-parameter CPU work (the
# trainer's 16-bit to fp32 conversions, the engine's copies, the kernel's TCP
# copies), which grows with the model as the bytes do; the link_ms_step
# column (the busier direction's bytes at the shaped rate) shows how much of
# the step the link can account for at most. It trains with plain ZeRO-3, hpZ
# (zero_hpz_partition_size 2), qwZ, qgZ and all three in the same run, with
# stage3_max_reuse_distance 0: the backward gathers every layer again, as it
# must for a model whose layers do not all stay gathered (otherwise the
# forward's gathers would be kept for the backward and hpZ would have nothing
# to save). For each: ms per step (mean over the measured steps, rank 0's
# ms_per_step lines), bytes crossing the link per step (both veth ends' tx
# counters, the difference between a run of WARM and a run of WARM + STEPS
# steps, divided by STEPS, so set-up and the rendezvous are not counted) and
# CPU ms per step of the whole job (every rank's user + system time, the same
# difference; cpu_ms_step / 2 is the least the step can take on 2 cores).
#
# The slow link (ZPP_SLOW_RATE, default 1gbit; "off" skips it): on this
# 2-core machine a step of plain ZeRO-3 is mostly CPU at 10 Gbit/s, so the
# link is a small part of it (docs/benchmarks.md). After the table, plain and
# all three train again on the link reshaped to that rate (one launch each,
# WARM + STEPS steps), where the link dominates the step as the issue's
# "large enough to be link-bound" means, and the line
#   slow_link: rate=R plain_ms_per_step=A all_ms_per_step=B plain_link_ms_step=C all_link_ms_step=D step_speedup=A/B
# reports it (link ms from the table's bytes at rate R). The summary stays
# the 10 Gbit/s figure.
#
# The host's state (bench_host_state, bench/lib.sh): before each row's runs
# the cross-core copy rate of bench/host/host_probe, in the host_gbs column;
# all of them (the slow link's runs too) on a line before the summary. On a
# host whose vCPUs the hypervisor moves, ranks on both cores slow down when
# it drops to about half (docs/benchmarks.md, "The host's state").
#
# Environment: ZPP_RATE (tc rate, NUMBER[k|m|g]bit, default 10gbit), ZPP_TLS
# (the job's UCX transports, default sm,self,tcp), ZPP_NODE_TLS (UCX
# transports of node communicators, default sm,self), ZPP_STEPS (default 6),
# ZPP_WARM (default 2), ZPP_MODEL (train_gpt model flags, default
# "--channels 768 --layers 2 --heads 4 --context 2"), ZPP_ONLY (a subset of
# the rows, e.g. "plain all"). Needs root, iproute2 (ip, tc), util-linux
# (unshare) and openssh-server; exits 77 when they are missing.
# The last line: summary: zeropp_cross_node_bytes_ratio=<x> zeropp_step_speedup=<y>
# (x: all over plain bytes per step; y: plain over all ms per step).
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
bench_build examples/train_gpt tools/zero-launch/zero-launch bench/host/host_probe
zl="$build_dir/tools/zero-launch/zero-launch"
gpt="$build_dir/examples/train_gpt"
data="$root/tests/data/license-texts"
rate=${ZPP_RATE:-10gbit}
slow_rate=${ZPP_SLOW_RATE:-1gbit}
steps=${ZPP_STEPS:-6}
warm=${ZPP_WARM:-2}
model=${ZPP_MODEL:---channels 768 --layers 2 --heads 4 --context 2}
node_tls=${ZPP_NODE_TLS:-sm,self}
job_tls=${ZPP_TLS:-sm,self,tcp}

skip() { echo "zeropp: SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root to create network namespaces"
command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1 || skip "no ip/tc (iproute2)"
sshd_bin=$(command -v sshd || echo /usr/sbin/sshd)
[ -x "$sshd_bin" ] || skip "no sshd (openssh-server)"
command -v unshare >/dev/null 2>&1 || skip "no unshare (util-linux)"

tag=$$
net="10.232.$(( tag % 200 + 20 ))"
ns1="zpp1_$tag" ns2="zpp2_$tag" va="zpa$tag" vb="zpb$tag"
tmp=$(mktemp -d /tmp/zero-bench-zeropp-XXXXXX)
sshd_pids=()
cleanup() {
    # SIGKILL: unshare --fork ignores SIGTERM (it leaves it to its child), so
    # a plain kill left this wait hanging; --kill-child then kills the sshd.
    for p in "${sshd_pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    for p in "${sshd_pids[@]}"; do wait "$p" 2>/dev/null; done
    ip netns del "$ns1" 2>/dev/null
    ip netns del "$ns2" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

ip netns add "$ns1" 2>/dev/null || skip "cannot create network namespaces here"
ip netns add "$ns2" || skip "cannot create a second network namespace"
ip link add "$va" type veth peer name "$vb" 2>/dev/null || skip "cannot create a veth pair"
ip link set "$va" netns "$ns1" && ip link set "$vb" netns "$ns2" || skip "cannot move veth ends"
ip -n "$ns1" addr add "$net.1/24" dev "$va" && ip -n "$ns1" link set "$va" up && ip -n "$ns1" link set lo up
ip -n "$ns2" addr add "$net.2/24" dev "$vb" && ip -n "$ns2" link set "$vb" up && ip -n "$ns2" link set lo up
# the link: $rate each way (a token bucket on each end's egress)
ip netns exec "$ns1" tc qdisc add dev "$va" root tbf rate "$rate" burst 4mb latency 50ms || skip "tc refused the shaping"
ip netns exec "$ns2" tc qdisc add dev "$vb" root tbf rate "$rate" burst 4mb latency 50ms || skip "tc refused the shaping"

ssh-keygen -q -t ed25519 -N '' -f "$tmp/host_key" && ssh-keygen -q -t ed25519 -N '' -f "$tmp/user_key" ||
    skip "ssh-keygen failed"
cp "$tmp/user_key.pub" "$tmp/authorized_keys"
chmod 600 "$tmp/authorized_keys"
mkdir -p /run/sshd
for i in 1 2; do
    cat > "$tmp/sshd$i.conf" <<CONF
ListenAddress $net.$i
Port 2222
HostKey $tmp/host_key
PidFile $tmp/sshd$i.pid
AuthorizedKeysFile $tmp/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
LogLevel ERROR
CONF
    ns_var="ns$i"
    # Each node is also its own IPC, PID and mount namespace, as separate
    # machines are: UCX then finds its shared-memory transports (which check
    # the IPC and PID namespaces) only between ranks of one node, so the
    # job's ring hops inside a node use shared memory and only the hops
    # between the nodes take TCP over the shaped veth.
    ip netns exec "${!ns_var}" unshare --ipc --pid --mount --mount-proc --fork --kill-child \
        "$sshd_bin" -D -f "$tmp/sshd$i.conf" -E "$tmp/sshd$i.log" &
    sshd_pids+=($!)
done
ssh_opts="-F /dev/null -i $tmp/user_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=5"
ready=0
for _ in $(seq 100); do
    # shellcheck disable=SC2086
    if ip netns exec "$ns1" ssh $ssh_opts -o BatchMode=yes -p 2222 "$net.2" true 2>/dev/null &&
       ip netns exec "$ns1" ssh $ssh_opts -o BatchMode=yes -p 2222 "$net.1" true 2>/dev/null; then
        ready=1
        break
    fi
    sleep 0.1
done
[ $ready -eq 1 ] || { cat "$tmp"/sshd*.log; skip "the sshd servers did not come up"; }
printf '%s slots=2\n%s slots=2\n' "$net.1" "$net.2" > "$tmp/hosts"
mkdir -p "$tmp/work"

# Each rank runs through this wrapper, which prints the CPU time the rank
# used (user and system, all its threads) when it exits: the cpu_ms_step
# column, the whole job's CPU per step, which other processes on the machine
# inflate far less than they do the step time.
cat > "$tmp/cpu_wrap.sh" <<'WRAP'
#!/usr/bin/env bash
"$@"
rc=$?
times > "${TMPDIR:-/tmp}/zeropp-times.$$"
echo "zeropp_cpu: $(tail -n 1 "${TMPDIR:-/tmp}/zeropp-times.$$")" >&2
rm -f "${TMPDIR:-/tmp}/zeropp-times.$$"
exit $rc
WRAP
chmod +x "$tmp/cpu_wrap.sh"

# the bytes each end of the veth has sent: "node1->node2 node2->node1"
link_bytes() {
    echo "$(ip netns exec "$ns1" cat "/sys/class/net/$va/statistics/tx_bytes")" \
         "$(ip netns exec "$ns2" cat "/sys/class/net/$vb/statistics/tx_bytes")"
}
# tc's rate (e.g. 10gbit, 500mbit) in bytes per millisecond
bytes_ms() {
    echo "$1" | awk '{ r = $0 + 0; u = tolower($0); sub(/^[0-9.]+/, "", u)
        m = u == "gbit" ? 1e9 : u == "mbit" ? 1e6 : u == "kbit" ? 1e3 : u == "bit" ? 1 : 0
        if (m == 0 || r <= 0) exit 1; printf "%.3f", r * m / 8 / 1000 }'
}
rate_bytes_ms=$(bytes_ms "$rate") || skip "ZPP_RATE '$rate': use NUMBER[k|m|g]bit"
if [ "$slow_rate" != off ]; then
    slow_bytes_ms=$(bytes_ms "$slow_rate") || skip "ZPP_SLOW_RATE '$slow_rate': use NUMBER[k|m|g]bit or off"
fi
# CPU seconds of every rank of the launch whose log is $1 (cpu_wrap.sh's lines: "zeropp_cpu: 0m1.5s 0m0.2s")
cpu_s() {
    awk '/zeropp_cpu:/ { for (i = 2; i <= NF; i++) { split($i, p, "m"); sub("s", "", p[2]); t += p[1] * 60 + p[2] } }
         END { printf "%.3f", t }' "$1"
}
# mean ms_per_step of the steps after WARM in rank 0's log $1
mean_ms() {
    awk -v w="$warm" '/^step=/ { split($1, s, "="); if (s[2] + 0 > w) for (i = 2; i <= NF; i++)
        if ($i ~ /^ms_per_step=/) { sub("ms_per_step=", "", $i); t += $i; k++ } }
        END { if (k) printf "%.1f", t / k; else print "nan" }' "$1"
}

# run NAME KEYS NSTEPS: one launch; prints the link bytes it moved each way
# ("node1->node2 node2->node1"); rank 0's log in $tmp/NAME.NSTEPS.log
run() {
    local cfg="$tmp/$1.json"
    cat > "$cfg" <<CONF
{"train_batch_size": 4, "train_micro_batch_size_per_gpu": 1, "steps_per_print": 0,
 "bf16": {"enabled": true},
 "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}},
 "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0, "stage3_max_reuse_distance": 0$2}}
CONF
    local b1 b2 a1 a2
    read -r b1 b2 <<< "$(link_bytes)"
    (cd "$tmp/work" && ip netns exec "$ns1" env HOME="$tmp" ZERO_LAUNCH_SSH_OPTS="$ssh_opts" UCX_TLS="$job_tls" \
        ZERO_COMM_NODE_UCX_TLS="$node_tls" "$zl" -H "$tmp/hosts" --ssh_port 2222 --master_port 0 "$tmp/cpu_wrap.sh" "$gpt" --config "$cfg" --steps "$3" \
        --print-interval 1 --eval-windows 0 $model --data "$data") > "$tmp/$1.$3.log" 2>&1 || {
        echo "zeropp: the $1 run failed:" >&2
        tail -20 "$tmp/$1.$3.log" >&2
        exit 1
    }
    read -r a1 a2 <<< "$(link_bytes)"
    echo "$(( a1 - b1 )) $(( a2 - b2 ))"
}

declare -A ms bytes busy keys
keys=([plain]="" [hpz]=', "zero_hpz_partition_size": 2' [qwz]=', "zero_quantized_weights": true'
      [qgz]=', "zero_quantized_gradients": true'
      [all]=', "zero_hpz_partition_size": 2, "zero_quantized_weights": true, "zero_quantized_gradients": true')
# ZPP_ONLY: a subset of the rows, e.g. "plain all" (the summary needs both)
read -r -a names <<< "${ZPP_ONLY:-plain hpz qwz qgz all}"
echo "zeropp: 2 nodes x 2 ranks (each node its own net, IPC and PID namespace), link $rate each way; UCX_TLS=$job_tls, node communicators $node_tls"
echo "zeropp: $steps measured steps after $warm, model: $model"
echo "zeropp: load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %12s %16s %12s %12s %10s %10s %9s\n' config ms_per_step link_bytes_step link_ms_step cpu_ms_step bytes_ratio \
    speedup host_gbs
for n in "${names[@]}"; do
    bench_host_state "$n" > "$tmp/host.$n"
    read -r s1 s2 <<< "$(run "$n" "${keys[$n]}" "$warm")" || exit 1
    read -r l1 l2 <<< "$(run "$n" "${keys[$n]}" $((warm + steps)))" || exit 1
    [ -n "$s2" ] && [ -n "$l2" ] || exit 1
    bytes[$n]=$(( (l1 - s1 + l2 - s2) / steps ))
    # the least time the link needs for a step's bytes: its busier direction at the shaped rate
    busy[$n]=$(( (l1 - s1 > l2 - s2 ? l1 - s1 : l2 - s2) / steps ))
    link_ms=$(awk -v a="${busy[$n]}" -v r="$rate_bytes_ms" 'BEGIN { printf "%.1f", a / r }')
    ms[$n]=$(mean_ms "$tmp/$n.$((warm + steps)).log")
    cpu_ms=$(awk -v a="$(cpu_s "$tmp/$n.$warm.log")" -v b="$(cpu_s "$tmp/$n.$((warm + steps)).log")" -v n="$steps" \
             'BEGIN { printf "%.1f", (b - a) * 1000 / n }')
    printf '%-6s %12s %16s %12s %12s %10.3f %10.3f %9s\n' "$n" "${ms[$n]}" "${bytes[$n]}" "$link_ms" "$cpu_ms" \
        "$(awk -v a="${bytes[$n]}" -v b="${bytes[plain]}" 'BEGIN { print a / b }')" \
        "$(awk -v a="${ms[plain]}" -v b="${ms[$n]}" 'BEGIN { print a / b }')" "${host_copy% GB/s}"
done
# the same two on a link slow enough to dominate the step (see the header)
if [ "$slow_rate" != off ] && [ -n "${ms[plain]:-}" ] && [ -n "${ms[all]:-}" ]; then
    ip netns exec "$ns1" tc qdisc change dev "$va" root tbf rate "$slow_rate" burst 4mb latency 50ms &&
        ip netns exec "$ns2" tc qdisc change dev "$vb" root tbf rate "$slow_rate" burst 4mb latency 50ms ||
        { echo "zeropp: tc refused the slow rate $slow_rate" >&2; exit 1; }
    declare -A slow_ms
    for n in plain all; do
        bench_host_state "$n-slow" > "$tmp/host.$n-slow"
        run "$n-slow" "${keys[$n]}" $((warm + steps)) > /dev/null || exit 1
        slow_ms[$n]=$(mean_ms "$tmp/$n-slow.$((warm + steps)).log")
    done
    echo "slow_link: rate=$slow_rate plain_ms_per_step=${slow_ms[plain]} all_ms_per_step=${slow_ms[all]}" \
         "plain_link_ms_step=$(awk -v a="${busy[plain]}" -v r="$slow_bytes_ms" 'BEGIN { printf "%.1f", a / r }')" \
         "all_link_ms_step=$(awk -v a="${busy[all]}" -v r="$slow_bytes_ms" 'BEGIN { printf "%.1f", a / r }')" \
         "step_speedup=$(awk -v a="${slow_ms[plain]}" -v b="${slow_ms[all]}" 'BEGIN { printf "%.3f", a / b }')"
fi
echo "zeropp: load after: $(cut -d' ' -f1-3 /proc/loadavg)"
bench_host_phases
echo "summary: zeropp_cross_node_bytes_ratio=$(awk -v a="${bytes[all]}" -v b="${bytes[plain]}" 'BEGIN { printf "%.3f", a / b }') zeropp_step_speedup=$(awk -v a="${ms[plain]}" -v b="${ms[all]}" 'BEGIN { printf "%.3f", a / b }')"
