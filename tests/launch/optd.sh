#!/usr/bin/env bash
# zero-launch --optd with the local launcher: the job's zero-optd servers are
# started before the ranks (which use them through the remote store with the
# job token and ZERO_OPTD_SERVERS), and stopped with the job: when it ends,
# when a rank fails, on SIGINT; a server that cannot listen stops the launch
# before any rank runs; a server that dies during the job is reported.
#
# Usage: optd.sh ZERO_LAUNCH ZERO_OPTD OPTD_CLIENT
set -u

zl=$(realpath "${1:?usage: optd.sh ZERO_LAUNCH ZERO_OPTD OPTD_CLIENT}")
optd=$(realpath "${2:?usage: optd.sh ZERO_LAUNCH ZERO_OPTD OPTD_CLIENT}")
client=$(realpath "${3:?usage: optd.sh ZERO_LAUNCH ZERO_OPTD OPTD_CLIENT}")

fail() { echo "optd: FAIL: $*"; failures=$((failures + 1)); }
failures=0
tmp=$(mktemp -d /tmp/zero-launch-optd-XXXXXX)
launcher_pid="" squatter=""
cleanup() {
    [ -n "$launcher_pid" ] && kill -9 "$launcher_pid" 2>/dev/null
    [ -n "$squatter" ] && kill -9 "$squatter" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp" || exit 99
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo} HOME="$tmp"
unset ZERO_JOB_TOKEN ZERO_OPTD_SERVERS

read -r p1 p2 < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
servers="127.0.0.1:$p1,127.0.0.1:$p2"

# the servers of this test still running (by their command line)
servers_alive() { pgrep -f "zero-optd --listen 127.0.0.1:($p1|$p2)\$" >/dev/null; }
servers_gone() {
    for _ in $(seq 100); do servers_alive || return 0; sleep 0.05; done
    return 1
}
prep() { rm -rf "$1"; mkdir -p "$1"; }

# ---- 1. two ranks use two servers; both stop with the job ----
# (zero-optd found beside zero-launch's build directory, no ZERO_LAUNCH_OPTD_EXE)
out="$tmp/out1"; prep "$out"
"$zl" --launcher local --num_gpus 2 --master_port 0 --optd "$servers" "$client" "$out" > "$tmp/stdout1" 2> "$tmp/stderr1"
rc=$?
[ $rc -eq 0 ] || { fail "launch 1 exited $rc"; cat "$tmp/stderr1"; }
for r in 0 1; do
    grep -qx "SERVERS=$servers" "$out/rank$r.ok" 2>/dev/null || fail "launch 1: rank $r did not use the servers"
done
grep -q "^\[optd 127.0.0.1:$p1\] zero-optd: listening on 127.0.0.1:$p1" "$tmp/stderr1" ||
    fail "launch 1: the server's output is not passed on, tagged"
servers_gone || fail "launch 1: a zero-optd outlived the job"
# stopped by zero-launch, which waited for them and passed on their last words
# (not only by the parent-death signal that backs it up)
for p in $p1 $p2; do
    grep -q "^\[optd 127.0.0.1:$p\] zero-optd: stopped" "$tmp/stderr1" || fail "launch 1: server $p was not stopped cleanly"
done
grep -q "exited during the job" "$tmp/stderr1" && fail "launch 1: the servers' stop at the end was reported as a failure"

export ZERO_LAUNCH_OPTD_EXE="$optd"

# ---- 2. a rank fails: the others and the servers are stopped ----
out="$tmp/out2"; prep "$out"
"$zl" --launcher local --num_gpus 2 --master_port 0 --term_grace 1 --optd "$servers" \
    "$client" "$out" --fail 3 > /dev/null 2> "$tmp/stderr2" &
launcher_pid=$!
wait "$launcher_pid"; rc=$?; launcher_pid=""
[ $rc -eq 3 ] || { fail "launch 2 exited $rc, expected 3"; cat "$tmp/stderr2"; }
servers_gone || fail "launch 2: a zero-optd outlived the failed job"
grep -q "^\[optd 127.0.0.1:$p1\] zero-optd: stopped" "$tmp/stderr2" || fail "launch 2: server $p1 was not stopped cleanly"

# ---- 3. SIGINT to zero-launch: ranks and servers stop ----
out="$tmp/out3"; prep "$out"
"$zl" --launcher local --num_gpus 2 --master_port 0 --term_grace 1 --optd "$servers" \
    "$client" "$out" --sleep 60 > /dev/null 2> "$tmp/stderr3" &
launcher_pid=$!
for _ in $(seq 200); do [ -f "$out/rank0.ok" ] && [ -f "$out/rank1.ok" ] && break; sleep 0.05; done
if [ -f "$out/rank0.ok" ] && [ -f "$out/rank1.ok" ]; then
    servers_alive || fail "launch 3: the servers are not running during the job"
    # ---- 5 (on the way). a server killed during the job is reported ----
    kill -9 "$(pgrep -f "zero-optd --listen 127.0.0.1:$p2\$")"
    for _ in $(seq 100); do grep -q "exited during the job" "$tmp/stderr3" && break; sleep 0.05; done
    grep -q "zero-optd 127.0.0.1:$p2 exited during the job with status 137" "$tmp/stderr3" ||
        fail "launch 3: the killed server was not reported"
    kill -INT "$launcher_pid"
    wait "$launcher_pid"; rc=$?; launcher_pid=""
    [ $rc -eq 130 ] || fail "launch 3 exited $rc after SIGINT, expected 130"
    for r in 0 1; do [ -f "$out/rank$r.term" ] || fail "launch 3: rank $r got no SIGTERM"; done
    servers_gone || fail "launch 3: a zero-optd outlived SIGINT"
    grep -q "^\[optd 127.0.0.1:$p1\] zero-optd: stopped" "$tmp/stderr3" || fail "launch 3: server $p1 was not stopped cleanly"
else
    fail "launch 3: ranks did not start"; cat "$tmp/stderr3"
fi

# ---- 4. a server that cannot listen (its port taken): no rank runs ----
ZERO_ALLOW_NO_TOKEN=1 "$optd" --listen "127.0.0.1:$p2" 2> "$tmp/squatter.log" &
squatter=$!
for _ in $(seq 100); do grep -q "listening on" "$tmp/squatter.log" && break; sleep 0.05; done
out="$tmp/out4"; prep "$out"
"$zl" --launcher local --num_gpus 2 --master_port 0 --term_grace 1 --optd "$servers" \
    "$client" "$out" > /dev/null 2> "$tmp/stderr4"
rc=$?
kill "$squatter"; wait "$squatter" 2>/dev/null; squatter=""
[ $rc -eq 1 ] || { fail "launch 4 exited $rc, expected 1"; cat "$tmp/stderr4"; }
grep -q "zero-optd 127.0.0.1:$p2 (.*) did not start: it exited with status" "$tmp/stderr4" ||
    { fail "launch 4: no error naming the server"; cat "$tmp/stderr4"; }
ls "$out"/rank* >/dev/null 2>&1 && fail "launch 4: a rank ran although a server did not start"
servers_gone || fail "launch 4: the server that did start outlived the failed launch"

# ---- 6. bad --optd lists are refused before anything starts ----
for bad in "nocolon" "h:0" "h:70000" ":7000" "h:7000,"; do
    "$zl" --launcher local --optd "$bad" "$client" "$tmp" > /dev/null 2> "$tmp/stderr6"
    rc=$?
    [ $rc -eq 2 ] || fail "--optd '$bad' exited $rc, expected 2"
    grep -q -- "--optd" "$tmp/stderr6" || fail "--optd '$bad': no error naming --optd"
done

if [ $failures -ne 0 ]; then
    echo "optd: $failures check(s) failed"
    exit 1
fi
echo "optd: all checks passed"
exit 0
