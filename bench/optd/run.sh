#!/usr/bin/env bash
# bench/run optd [--n ELEMS] [--piece ELEMS] [--reps R] [--window W]:
# the optimizer step with its state on one zero-optd against the state in the
# rank (the in-process host store), measured by bench_optd on three paths in
# one run, each next to the raw UCX bandwidth of the same path:
#
#  shm     zero-optd on 127.0.0.1, UCX picks its transports (UCX_NET_DEVICES=lo),
#          run inside the first namespace when there is one, and the bytes on
#          its loopback counted: by default the same-host data connection
#          (shared memory, and the loopback stays idle; x is this path). The
#          same run then steps with ZERO_OPTD_SAME_HOST=0, every request on
#          the store's peer-failure connection, which UCX 1.13 gives no
#          shared memory (TCP over loopback), as that run's baseline, and
#          with ZERO_OPTD_ONESIDED=0 (shm-tag: the data connection with STEP's
#          arrays as tagged messages, not through the server's region).
#  tcp     zero-optd in a second network namespace, joined to the first by a
#          veth pair, UCX_TLS=tcp on both sides (shared memory would bypass
#          the link: one host, one IPC namespace).
#  tcp-tc  the same with each end of the veth shaped by tc to $OPTD_RATE
#          (default 10gbit).
#  tcp-tc-free  the shaped run again with neither end pinned (below), as
#          that run's comparison; y is not taken from it.
#
# The two namespaces stand for two hosts, and two hosts do not share cores:
# on a host of 2 or more CPUs, each namespace's processes (zero-optd and the
# server side of ucx_perftest in the second, bench_optd and the client side
# in the first) run pinned to a CPU of their own (taskset: the first and the
# last CPU this script may use). Unpinned, the scheduler often runs both
# ends on one core after a socket wake-up, and the step then takes the sum
# of their CPU times (docs/optd.md, "Two hosts on one machine: pinned ends").
#
# Raw bandwidth: ucx_perftest between the same two places with the same UCX
# settings, messages of $OPTD_MSG bytes (default 524288, the store's message:
# 256 Ki bf16 elements), tagged (tag_bw, what the store uses) and one-sided
# (ucp_put_bw, what an RMA protocol would use; see docs/optd.md).
# Bytes: the store's message bytes per step each way against the expected
# 2 bytes per element each way, and on the veth paths the bytes both ends
# transmitted during the remote steps (TCP/IP included) per step.
# CPU: bench_optd prints the client's and the server's CPU time per remote
# step; on the shaped link this script sets them beside the step time and
# the unshaped step's time (when both ends share the host's cores and the
# step needs them all, the CPU bounds it, not the link).
#
# Last line:
#   summary: optd_shm_step_over_local=<x> optd_tcp_throughput_over_link=<y>
# x: remote step over host-store step, shm path (target <= 1.5).
# y: the step's throughput on the shaped link (the larger direction's message
#    bytes per step over the step time) over the link's raw UCX tagged
#    bandwidth (target >= 0.8). The link is full duplex and shaped per
#    direction, and the step sends gradients one way while weights come back
#    the other, so one direction is the bound.
# The host's state: a "host: cross-core copy ..." line (bench/host/host_probe,
# bench_host_state in bench/lib.sh) before each measured phase, this
# script's lines about the phase tagged "[host X GB/s]" (bench_optd's own
# lines are not), and the rates of all phases on one line before the summary. On a host whose vCPUs the hypervisor moves (the 2-vCPU
# development VM), x and y swing run to run with the cross-core copy rate
# (the slow state about doubles the server's CPU per step), with the load
# from other processes, and y with the raw link figure too (docs/optd.md,
# Benchmark): compare only figures taken in the same state and at similar load.
# Where namespaces or tc cannot be set up (not root, no iproute2), y is "na"
# and the reason goes to stderr; without ucx_perftest the ratio is "na" too.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
bench_build bench/optd/bench_optd tools/zero-optd/zero-optd bench/host/host_probe
bench="$build_dir/bench/optd/bench_optd"
optd="$build_dir/tools/zero-optd/zero-optd"
rate=${OPTD_RATE:-10gbit}
msg=${OPTD_MSG:-524288}
raw_iters=${OPTD_RAW_ITERS:-1000}
tmp=$(mktemp -d /tmp/zero-bench-optd-XXXXXX)
tag=$$
ns1="" ns2=""
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    [ -n "$ns1" ] && ip netns del "$ns1" 2>/dev/null
    [ -n "$ns2" ] && ip netns del "$ns2" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# field NAME FILE: the value of NAME=... on the file's "result:" line
field() { sed -n "s/^result:.* $1=\([^ ]*\).*/\1/p" "$2" | tail -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "na"; else printf "%.3f", a / b }'; }

# raw_bw TEST CLIENT_PREFIX SERVER_PREFIX HOST: MB/s (2^20 bytes) of ucx_perftest TEST, or nothing
raw_bw() {
    local t=$1 cpre=$2 spre=$3 host=$4 port out spid
    command -v ucx_perftest >/dev/null 2>&1 || return 0
    for _ in 1 2 3; do
        port=$((20000 + RANDOM % 20000))
        # shellcheck disable=SC2086
        $spre ucx_perftest -p "$port" >/dev/null 2>&1 &
        spid=$!
        sleep 0.3
        # shellcheck disable=SC2086
        out=$($cpre timeout 120 ucx_perftest "$host" -p "$port" -t "$t" -s "$msg" -n "$raw_iters" -w 50 -f 2>/dev/null |
              awk 'NF == 8 && $1 ~ /^[0-9]+$/ { v = $6 } END { if (v != "") print v }')
        kill "$spid" 2>/dev/null
        wait "$spid" 2>/dev/null
        [ -n "$out" ] && { echo "$out"; return 0; }
    done
}

# raw_bw_both CLIENT_PREFIX SERVER_PREFIX CLIENT_ADDR SERVER_ADDR: "A B", the MB/s of two tag_bw runs at
# once in opposite directions (as the step loads the path: gradients one way, weights the other)
raw_bw_both() {
    local cpre=$1 spre=$2 caddr=$3 saddr=$4 p1 p2 s1 s2 c1
    command -v ucx_perftest >/dev/null 2>&1 || return 0
    p1=$((20000 + RANDOM % 20000)) p2=$((20000 + RANDOM % 20000))
    # shellcheck disable=SC2086
    $spre ucx_perftest -p "$p1" >/dev/null 2>&1 &
    s1=$!
    # shellcheck disable=SC2086
    $cpre ucx_perftest -p "$p2" >/dev/null 2>&1 &
    s2=$!
    sleep 0.3
    # shellcheck disable=SC2086
    $cpre timeout 120 ucx_perftest "$saddr" -p "$p1" -t tag_bw -s "$msg" -n "$raw_iters" -w 50 -f 2>/dev/null |
        awk 'NF == 8 && $1 ~ /^[0-9]+$/ { v = $6 } END { print v }' > "$tmp/both1" &
    c1=$!
    # shellcheck disable=SC2086
    $spre timeout 120 ucx_perftest "$caddr" -p "$p2" -t tag_bw -s "$msg" -n "$raw_iters" -w 50 -f 2>/dev/null |
        awk 'NF == 8 && $1 ~ /^[0-9]+$/ { v = $6 } END { print v }' > "$tmp/both2"
    wait "$c1"
    kill "$s1" "$s2" 2>/dev/null
    wait "$s1" "$s2" 2>/dev/null
    echo "$(cat "$tmp/both1") $(cat "$tmp/both2")"
}

args=("$@")
declare -A host_at   # each phase's cross-core copy rate (bench_host_state's $host_copy), for its lines
echo "optd: load before: $(cut -d' ' -f1-3 /proc/loadavg)"
command -v ucx_perftest >/dev/null 2>&1 || echo "optd: no ucx_perftest (ucx-utils): raw bandwidths are na" >&2

# ---- TCP between two network namespaces
tcp_ratio=na
# pin_setup: sets pin_client / pin_server ("taskset -c N" prefixes, one CPU each) and pin_note, or leaves them
# empty where there is one CPU or no taskset (then both ends share the cores, and pin_note says so)
pin_client="" pin_server="" pin_note="not pinned"
pin_setup() {
    local cpus first last
    command -v taskset >/dev/null 2>&1 || { pin_note="not pinned: no taskset (util-linux)"; return 0; }
    cpus=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)
    first=${cpus%%[,-]*} last=${cpus##*[,-]}
    if [ -z "$first" ] || [ "$first" = "$last" ]; then
        pin_note="not pinned: one CPU ($cpus)"
        return 0
    fi
    pin_client="taskset -c $first" pin_server="taskset -c $last"
    pin_note="client side on CPU $first, server side on CPU $last"
}
pin_setup
netns_setup() {
    local net="10.233.$(( tag % 200 + 20 ))"
    [ "$(id -u)" -eq 0 ] || { why="needs root to create network namespaces"; return 1; }
    command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1 || { why="no ip/tc (iproute2)"; return 1; }
    ip netns add "optd1_$tag" 2>/dev/null || { why="cannot create a network namespace"; return 1; }
    ns1="optd1_$tag"
    ip netns add "optd2_$tag" 2>/dev/null || { why="cannot create a second network namespace"; return 1; }
    ns2="optd2_$tag"
    va="opa$tag" vb="opb$tag" addr1="$net.1" addr2="$net.2"
    ip link add "$va" type veth peer name "$vb" 2>/dev/null || { why="cannot create a veth pair"; return 1; }
    ip link set "$va" netns "$ns1" && ip link set "$vb" netns "$ns2" || { why="cannot move the veth ends"; return 1; }
    ip -n "$ns1" addr add "$addr1/24" dev "$va" && ip -n "$ns1" link set "$va" up && ip -n "$ns1" link set lo up &&
    ip -n "$ns2" addr add "$addr2/24" dev "$vb" && ip -n "$ns2" link set "$vb" up && ip -n "$ns2" link set lo up ||
        { why="cannot configure the veth pair"; return 1; }
}
link_bytes() {
    echo $(( $(ip netns exec "$ns1" cat "/sys/class/net/$va/statistics/tx_bytes") +
             $(ip netns exec "$ns2" cat "/sys/class/net/$vb/statistics/tx_bytes") ))
}
# tcp_run NAME [free]: zero-optd in ns2, bench_optd in ns1, each pinned to its own CPU (pin_setup), then
# the raw bandwidths (link_tag, link_put) the same way. With "free": neither pinned, and no raw bandwidths.
tcp_run() {
    local name=$1 free=${2:-} port="" before after reps cpin=$pin_client spin=$pin_server
    [ "$free" = free ] && cpin="" spin=""
    rm -f "$tmp/port"
    # shellcheck disable=SC2086
    ip netns exec "$ns2" env -u ZERO_JOB_TOKEN UCX_TLS=tcp UCX_NET_DEVICES="$vb" ZERO_ALLOW_NO_TOKEN=1 \
        $spin "$optd" --listen "$addr2:0" --port-file "$tmp/port" 2> "$tmp/server.$name.log" &
    server_pid=$!
    for _ in $(seq 300); do
        [ -s "$tmp/port" ] && port=$(cat "$tmp/port") && break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        echo "optd: zero-optd did not start in the namespace:" >&2
        cat "$tmp/server.$name.log" >&2
        return 1
    fi
    bench_host_state "$name"
    host_at[$name]=$host_copy
    before=$(link_bytes)
    # shellcheck disable=SC2086
    ip netns exec "$ns1" env UCX_TLS=tcp UCX_NET_DEVICES="$va" \
        $cpin "$bench" --server "$addr2:$port" --server-pid "$server_pid" "${args[@]}" | tee "$tmp/$name.out" || return 1
    after=$(link_bytes)
    kill "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
    server_pid=""
    # the link carried the warm-up step and the measured ones (the host store's steps stay in the process)
    reps=$(sed -n 's/.* \([0-9]*\) reps (medians)$/\1/p' "$tmp/$name.out")
    echo "link bytes per remote step (both directions, TCP/IP included): $(( (after - before) / (reps + 1) )) against" \
         "$(( $(field sent_per_step "$tmp/$name.out") + $(field received_per_step "$tmp/$name.out") )) message bytes" \
         "[host $host_copy]"
    [ "$free" = free ] && return 0
    local cpre="ip netns exec $ns1 env UCX_TLS=tcp UCX_NET_DEVICES=$va $cpin"
    local spre="ip netns exec $ns2 env UCX_TLS=tcp UCX_NET_DEVICES=$vb $spin"
    bench_host_state "$name-raw"
    link_tag=$(raw_bw tag_bw "$cpre" "$spre" "$addr2")
    link_put=$(raw_bw ucp_put_bw "$cpre" "$spre" "$addr2")
    echo "raw UCX, same path, $msg-byte messages: tagged ${link_tag:-na} MB/s, one-sided put ${link_put:-na} MB/s" \
         "[host $host_copy]"
    link_both=$(raw_bw_both "$cpre" "$spre" "$addr1" "$addr2")
    echo "raw UCX tagged, both directions at once: ${link_both% *} + ${link_both#* } MB/s" \
         "(the step loads both directions; docs/optd.md: on a CPU-bound path their sum is about one direction's)" \
         "[host $host_copy]"
}
# throughput NAME: MB/s (2^20) of the larger direction's message bytes over the step time
throughput() {
    awk -v s="$(field sent_per_step "$tmp/$1.out")" -v r="$(field received_per_step "$tmp/$1.out")" \
        -v ms="$(field remote_ms "$tmp/$1.out")" \
        'BEGIN { if (ms == "") exit; b = s > r ? s : r; printf "%.1f", b / (ms / 1e3) / 1048576 }'
}

# throughput_both NAME: MB/s of both directions' message bytes over the step time
throughput_both() {
    awk -v s="$(field sent_per_step "$tmp/$1.out")" -v r="$(field received_per_step "$tmp/$1.out")" \
        -v ms="$(field remote_ms "$tmp/$1.out")" \
        'BEGIN { if (ms == "") exit; printf "%.1f", (s + r) / (ms / 1e3) / 1048576 }'
}

why=""
netns_setup || true
# ---- shm: one host, UCX's own choice. Inside the first namespace when there
# is one, so that its loopback counter shows what went through TCP.
here_pre=""
[ -n "$why" ] || here_pre="ip netns exec $ns1"
# one_host NAME [ENV...]: bench_optd against a zero-optd on 127.0.0.1, and the loopback bytes per step
one_host() {
    local name=$1 lo_before lo_after reps
    shift
    bench_host_state "$name"
    host_at[$name]=$host_copy
    [ -n "$here_pre" ] && lo_before=$($here_pre cat /sys/class/net/lo/statistics/tx_bytes)
    # shellcheck disable=SC2086
    $here_pre env UCX_NET_DEVICES=lo "$@" "$bench" --optd "$optd" "${args[@]}" | tee "$tmp/$name.out" ||
        { echo "optd: the $name run failed" >&2; exit 1; }
    if [ -n "$here_pre" ]; then
        reps=$(sed -n 's/.* \([0-9]*\) reps (medians)$/\1/p' "$tmp/$name.out")
        lo_after=$($here_pre cat /sys/class/net/lo/statistics/tx_bytes)
        echo "loopback TCP bytes per remote step: $(( (lo_after - lo_before) / (reps + 1) ))" \
             "(the message bytes go through TCP when this is about their sum; shared memory leaves it near 0)" \
             "[host $host_copy]"
    fi
}
echo "== shm (zero-optd on 127.0.0.1, UCX_NET_DEVICES=lo, the default: the same-host data connection, shared memory)"
one_host shm
echo "== shm-ctl (the same with ZERO_OPTD_SAME_HOST=0: every request on the peer-failure connection, TCP over loopback)"
one_host shm-ctl ZERO_OPTD_SAME_HOST=0
echo "same run: remote step $(field remote_ms "$tmp/shm.out") ms on the data connection against" \
     "$(field remote_ms "$tmp/shm-ctl.out") ms with ZERO_OPTD_SAME_HOST=0; that path over its host store:" \
     "$(ratio "$(field remote_ms "$tmp/shm-ctl.out")" "$(field local_ms "$tmp/shm-ctl.out")")" \
     "[host ${host_at[shm]}, ${host_at[shm-ctl]}]"
echo "== shm-tag (the data connection with ZERO_OPTD_ONESIDED=0: STEP's arrays as tagged messages through UCX's FIFO, not the server's region)"
one_host shm-tag ZERO_OPTD_ONESIDED=0
echo "same run: remote step $(field remote_ms "$tmp/shm.out") ms through the region against" \
     "$(field remote_ms "$tmp/shm-tag.out") ms as tagged messages; that path over its host store:" \
     "$(ratio "$(field remote_ms "$tmp/shm-tag.out")" "$(field local_ms "$tmp/shm-tag.out")")" \
     "[host ${host_at[shm]}, ${host_at[shm-tag]}]"
bench_host_state shm-raw
shm_tag=$(raw_bw tag_bw "$here_pre env UCX_NET_DEVICES=lo" "$here_pre env UCX_NET_DEVICES=lo" 127.0.0.1)
shm_put=$(raw_bw ucp_put_bw "$here_pre env UCX_NET_DEVICES=lo" "$here_pre env UCX_NET_DEVICES=lo" 127.0.0.1)
echo "raw UCX, same path, $msg-byte messages: tagged ${shm_tag:-na} MB/s, one-sided put ${shm_put:-na} MB/s" \
     "[host $host_copy]"
shm_ratio=$(ratio "$(field remote_ms "$tmp/shm.out")" "$(field local_ms "$tmp/shm.out")")

if [ -z "$why" ]; then
    echo "== tcp (zero-optd in another network namespace, veth, UCX_TLS=tcp, not shaped; $pin_note)"
    if tcp_run tcp; then
        echo "step throughput (larger direction): $(throughput tcp) MB/s [host ${host_at[tcp]}]"
        if ip netns exec "$ns1" tc qdisc add dev "$va" root tbf rate "$rate" burst 4mb latency 50ms 2>/dev/null &&
           ip netns exec "$ns2" tc qdisc add dev "$vb" root tbf rate "$rate" burst 4mb latency 50ms 2>/dev/null; then
            echo "== tcp-tc (the same, each direction shaped to $rate by tc; $pin_note)"
            if tcp_run tcp-tc; then
                tput=$(throughput tcp-tc)
                nominal=$(awk -v r="$rate" 'BEGIN { v = r + 0; if (r ~ /gbit$/) v *= 1e9; else if (r ~ /mbit$/) v *= 1e6;
                          else if (r ~ /kbit$/) v *= 1e3; printf "%.1f", v / 8 / 1048576 }')
                echo "step throughput (larger direction): ${tput:-na} MB/s against the link's ${link_tag:-na} MB/s" \
                     "(raw UCX, tagged); the shaped rate is $nominal MB/s, ratio $(ratio "$tput" "$nominal")" \
                     "[host ${host_at[tcp-tc]}, raw $host_copy]"
                tcp_ratio=$(ratio "$tput" "${link_tag:-}")
                echo "step throughput, both directions: $(throughput_both tcp-tc) MB/s against the raw" \
                     "$(awk -v a="${link_both% *}" -v b="${link_both#* }" 'BEGIN { printf "%.1f", a + b }') MB/s" \
                     "of both directions at once, ratio $(ratio "$(throughput_both tcp-tc)" \
                     "$(awk -v a="${link_both% *}" -v b="${link_both#* }" 'BEGIN { printf "%.1f", a + b }')")"
                [ "$tcp_ratio" = na ] && echo "optd: no raw bandwidth of the shaped link (ucx_perftest)" >&2
                # Both ends share this host's cores: a step that needs them all is bound by the CPU, not
                # the link, and then runs as fast unshaped (docs/optd.md, "Where the CPU goes over TCP").
                echo "step CPU (shaped): client $(field client_cpu_per_step_ms "$tmp/tcp-tc.out") ms + server" \
                     "$(field server_cpu_per_step_ms "$tmp/tcp-tc.out") ms per" \
                     "$(field remote_ms "$tmp/tcp-tc.out") ms step, on a host of $(nproc) cores;" \
                     "the same step unshaped: $(field remote_ms "$tmp/tcp.out") ms [host ${host_at[tcp-tc]}, ${host_at[tcp]}]"
                if [ -n "$pin_client" ]; then
                    echo "== tcp-tc-free (the shaped run again, neither end pinned: the scheduler places them; for comparison, y is not taken from it)"
                    if tcp_run tcp-tc-free free; then
                        echo "same run, shaped link: remote step $(field remote_ms "$tmp/tcp-tc.out") ms pinned against" \
                             "$(field remote_ms "$tmp/tcp-tc-free.out") ms unpinned (client $(field client_cpu_per_step_ms "$tmp/tcp-tc-free.out")" \
                             "+ server $(field server_cpu_per_step_ms "$tmp/tcp-tc-free.out") ms of CPU per step);" \
                             "unpinned, the throughput over the link would be $(ratio "$(throughput tcp-tc-free)" "${link_tag:-}")" \
                             "[host ${host_at[tcp-tc]}, ${host_at[tcp-tc-free]}]"
                    else
                        echo "optd: the unpinned run over the shaped link failed" >&2
                    fi
                fi
            else
                echo "optd: the run over the shaped link failed" >&2
            fi
        else
            echo "optd: tc refused to shape the veth link" >&2
        fi
    else
        echo "optd: the run between network namespaces failed" >&2
    fi
else
    echo "optd: no TCP run between network namespaces: $why" >&2
fi
echo "optd: load after: $(cut -d' ' -f1-3 /proc/loadavg)"
bench_host_state end
bench_host_phases
echo "summary: optd_shm_step_over_local=$shm_ratio optd_tcp_throughput_over_link=$tcp_ratio"
