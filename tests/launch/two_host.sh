#!/usr/bin/env bash
# Two-host test of zero-launch: two network namespaces joined by a veth pair,
# an sshd started here in each (own host key, own authorized key, all in a
# temporary directory), and zero-launch run inside the first namespace with a
# hostfile naming both addresses. Neither address is "local" by name, so every
# rank goes through ssh and the `zero-launch --remote_exec` wrapper.
#
# Checks: each rank's variables (RANK, LOCAL_RANK, CROSS_RANK, ...) and that it
# ran in the right namespace; env-file and UCX_* variables reach remote ranks;
# a failing remote rank ends every other rank on both hosts and zero-launch
# returns its status; SIGINT to zero-launch ends them all; SIGKILL to
# zero-launch (no clean-up possible in the launcher) still ends the remote
# ranks, because their wrapper sees the ssh session close; --launcher pdsh
# (through a stand-in pdsh script) passes variables and tears down too.
#
# --optd starts a zero-optd on each host through ssh, which every rank uses
# over TCP, and stops them with the job.
#
# Usage: two_host.sh ZERO_LAUNCH PRINT_ENV [ZERO_OPTD OPTD_CLIENT]. Needs root, iproute2 and
# openssh-server; exits 77 (skipped) when they are missing.
set -u

zl=$(realpath "${1:?usage: two_host.sh ZERO_LAUNCH PRINT_ENV}")
pe=$(realpath "${2:?usage: two_host.sh ZERO_LAUNCH PRINT_ENV}")
# optional: the --optd case (zero-optd and the rank that uses it)
optd_exe=${3:+$(realpath "$3")}
optd_client=${4:+$(realpath "$4")}

skip() { echo "two_host: SKIP: $*"; exit 77; }
fail() { echo "two_host: FAIL: $*"; failures=$((failures + 1)); }
failures=0

[ "$(id -u)" -eq 0 ] || skip "needs root to create network namespaces"
command -v ip >/dev/null 2>&1 || skip "no 'ip' command (iproute2)"
sshd_bin=$(command -v sshd || echo /usr/sbin/sshd)
[ -x "$sshd_bin" ] || skip "no sshd (openssh-server)"
command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1 || skip "no ssh client"

tag=$$
net="10.231.$(( tag % 200 + 20 ))"
ns1="zl1_$tag" ns2="zl2_$tag"
tmp=$(mktemp -d /tmp/zero-two-host-XXXXXX)
sshd_pids=()
launcher_pid=""

cleanup() {
    [ -n "$launcher_pid" ] && kill -9 "$launcher_pid" 2>/dev/null
    for p in "${sshd_pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${sshd_pids[@]}"; do wait "$p" 2>/dev/null; done
    ip netns del "$ns1" 2>/dev/null
    ip netns del "$ns2" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

ip netns add "$ns1" 2>/dev/null || skip "cannot create network namespaces here"
ip netns add "$ns2" || skip "cannot create a second network namespace"
ip link add "zla$tag" type veth peer name "zlb$tag" 2>/dev/null || skip "cannot create a veth pair"
ip link set "zla$tag" netns "$ns1" && ip link set "zlb$tag" netns "$ns2" || skip "cannot move veth ends"
ip -n "$ns1" addr add "$net.1/24" dev "zla$tag" && ip -n "$ns1" link set "zla$tag" up && ip -n "$ns1" link set lo up
ip -n "$ns2" addr add "$net.2/24" dev "zlb$tag" && ip -n "$ns2" link set "zlb$tag" up && ip -n "$ns2" link set lo up

# keys and sshd configuration, all in $tmp
ssh-keygen -q -t ed25519 -N '' -f "$tmp/host_key" || skip "ssh-keygen failed"
ssh-keygen -q -t ed25519 -N '' -f "$tmp/user_key" || skip "ssh-keygen failed"
cp "$tmp/user_key.pub" "$tmp/authorized_keys"
chmod 600 "$tmp/authorized_keys"
mkdir -p /run/sshd   # privilege separation directory, normally made by the package
for i in 1 2; do
    cat > "$tmp/sshd$i.conf" <<EOF
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
MaxStartups 100
LogLevel ERROR
EOF
    ns_var="ns$i"
    ip netns exec "${!ns_var}" "$sshd_bin" -D -f "$tmp/sshd$i.conf" -E "$tmp/sshd$i.log" &
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
if [ $ready -ne 1 ]; then
    cat "$tmp"/sshd*.log
    skip "the sshd servers did not come up"
fi

netns1=$(ip netns exec "$ns1" readlink /proc/self/ns/net)
netns2=$(ip netns exec "$ns2" readlink /proc/self/ns/net)

mkdir -p "$tmp/work" "$tmp/home"
printf '%s slots=2\n%s slots=2\n' "$net.1" "$net.2" > "$tmp/hosts"
printf 'FROM_CWD=it'"'"'s here\n' > "$tmp/work/.deepspeed_env"
printf 'FROM_HOME=$HOME is literal\n' > "$tmp/home/.deepspeed_env"

# Runs zero-launch inside the first namespace (call it in a subshell: it
# execs, so a background subshell's $! is zero-launch itself).
launch_exec() {
    cd "$tmp/work" || exit 99
    exec ip netns exec "$ns1" env PATH="$launch_path" HOME="$tmp/home" ZERO_LAUNCH_SSH_OPTS="$ssh_opts" UCX_TLS=tcp \
        "$zl" -H "$tmp/hosts" --ssh_port 2222 --master_port 0 "$@"
}
prep() { rm -rf "$1"; mkdir -p "$1"; }
launch_path=$PATH

val() { sed -n "s/^$2=//p" "$1" 2>/dev/null; }

# ---- 1. every rank's environment, on the right host ----
out="$tmp/out1"
prep "$out"
(launch_exec --tag_output --term_grace 1 "$pe" "$out" --var UCX_TLS --var FROM_CWD --var FROM_HOME \
    --print 1 "arg with space") > "$tmp/stdout1" 2> "$tmp/stderr1"
rc=$?
[ $rc -eq 0 ] || { fail "launch 1 exited $rc"; cat "$tmp/stderr1"; }
token=$(val "$out/rank0.env" ZERO_JOB_TOKEN)
port=$(val "$out/rank0.env" MASTER_PORT)
[[ "$token" =~ ^[0-9a-f]{32}$ ]] || fail "rank 0 token '$token' is not 32 hex characters"
[ -n "$port" ] && [ "$port" -gt 0 ] || fail "master port '$port'"
for r in 0 1 2 3; do
    f="$out/rank$r.env"
    [ -f "$f" ] || { fail "rank $r wrote no file"; continue; }
    node=$((r / 2))
    expect="RANK=$r LOCAL_RANK=$((r % 2)) WORLD_SIZE=4 LOCAL_SIZE=2 CROSS_RANK=$node CROSS_SIZE=2 MASTER_ADDR=$net.1 MASTER_PORT=$port CUDA_VISIBLE_DEVICES=0,1 ZERO_JOB_TOKEN=$token UCX_TLS=tcp"
    for kv in $expect; do
        k=${kv%%=*} v=${kv#*=}
        got=$(val "$f" "$k")
        [ "$got" = "$v" ] || fail "rank $r: $k='$got', expected '$v'"
    done
    [ "$(val "$f" FROM_CWD)" = "it's here" ] || fail "rank $r: FROM_CWD='$(val "$f" FROM_CWD)'"
    [ "$(val "$f" FROM_HOME)" = "\$HOME is literal" ] || fail "rank $r: FROM_HOME='$(val "$f" FROM_HOME)'"
    [ "$(val "$f" CWD)" = "$tmp/work" ] || fail "rank $r: ran in '$(val "$f" CWD)', not $tmp/work"
    [ "$(val "$f" ARGS)" = "[arg with space]" ] || fail "rank $r: arguments '$(val "$f" ARGS)'"
    want_ns=$([ $node -eq 0 ] && echo "$netns1" || echo "$netns2")
    [ "$(val "$f" NETNS)" = "$want_ns" ] || fail "rank $r ran in namespace $(val "$f" NETNS), expected $want_ns"
    grep -qx "\[rank $r\] out 0 of rank $r" "$tmp/stdout1" || fail "no tagged output line from rank $r"
done

# ---- 2. a remote rank fails: all others, on both hosts, are stopped ----
out="$tmp/out2"
prep "$out"
(launch_exec --term_grace 1 "$pe" "$out" --fail 3:3 --sleep 60) > /dev/null 2> "$tmp/stderr2"
rc=$?
[ $rc -eq 3 ] || { fail "launch 2 exited $rc, expected 3"; cat "$tmp/stderr2"; }
grep -q "rank 3 on $net.2 exited with status 3" "$tmp/stderr2" || fail "launch 2 did not report rank 3"
for r in 0 1 2; do
    pid=$(val "$out/rank$r.env" PID)
    [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null || fail "launch 2: rank $r (pid $pid) is still alive"
    [ -f "$out/rank$r.term" ] || fail "launch 2: rank $r was not stopped by SIGTERM"
done

# wait until all four ranks of a background launch have written their files
wait_ranks() {
    for _ in $(seq 400); do
        [ -f "$1/rank0.env" ] && [ -f "$1/rank1.env" ] && [ -f "$1/rank2.env" ] && [ -f "$1/rank3.env" ] && return 0
        sleep 0.05
    done
    return 1
}
# every rank pid gone within ~15 s
all_gone() {
    for _ in $(seq 150); do
        local alive=0
        for r in 0 1 2 3; do
            pid=$(val "$1/rank$r.env" PID)
            [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1
        done
        [ $alive -eq 0 ] && return 0
        sleep 0.1
    done
    return 1
}

# ---- 3. SIGINT to zero-launch stops every rank ----
out="$tmp/out3"
prep "$out"
(launch_exec --term_grace 2 "$pe" "$out" --sleep 60) > /dev/null 2> "$tmp/stderr3" &
launcher_pid=$!
if wait_ranks "$out"; then
    # the job token travels on the ssh session's stdin: no command line shows it
    token3=$(val "$out/rank0.env" ZERO_JOB_TOKEN)
    for c in /proc/[0-9]*/cmdline; do
        if { tr '\0' ' ' < "$c"; } 2>/dev/null | grep -q -- "$token3"; then
            fail "launch 3: the job token is visible in $c"
        fi
    done
    kill -INT "$launcher_pid"
    wait "$launcher_pid"
    rc=$?
    launcher_pid=""
    [ $rc -eq 130 ] || fail "launch 3 exited $rc after SIGINT, expected 130"
    all_gone "$out" || fail "launch 3: ranks survived SIGINT"
    for r in 0 1 2 3; do [ -f "$out/rank$r.term" ] || fail "launch 3: rank $r got no SIGTERM"; done
else
    fail "launch 3: ranks did not start"; cat "$tmp/stderr3"
fi

# ---- 4. zero-launch killed outright: the remote wrappers still end their ranks ----
out="$tmp/out4"
prep "$out"
(launch_exec --term_grace 1 "$pe" "$out" --sleep 60) > /dev/null 2> "$tmp/stderr4" &
launcher_pid=$!
if wait_ranks "$out"; then
    kill -KILL "$launcher_pid"
    wait "$launcher_pid" 2>/dev/null
    launcher_pid=""
    all_gone "$out" || fail "launch 4: ranks survived the launcher's SIGKILL"
    for r in 0 1 2 3; do [ -f "$out/rank$r.term" ] || fail "launch 4: rank $r got no SIGTERM"; done
else
    fail "launch 4: ranks did not start"; cat "$tmp/stderr4"
fi

# ---- 5. --launcher pdsh, through a stand-in pdsh (pdsh itself is not installed
# here) that runs what real pdsh would: ssh with $PDSH_SSH_ARGS_APPEND, no stdin ----
mkdir -p "$tmp/bin"
cat > "$tmp/bin/pdsh" <<'EOF'
#!/usr/bin/env bash
# stand-in for: pdsh -S -R ssh -w HOST COMMAND
[ "$1 $2 $3 $4" = "-S -R ssh -w" ] || { echo "pdsh stand-in: unexpected arguments: $*" >&2; exit 99; }
[ "$PDSH_RCMD_TYPE" = ssh ] || { echo "pdsh stand-in: PDSH_RCMD_TYPE='$PDSH_RCMD_TYPE'" >&2; exit 99; }
# shellcheck disable=SC2086
exec ssh $PDSH_SSH_ARGS_APPEND "$5" "$6" < /dev/null
EOF
chmod +x "$tmp/bin/pdsh"
launch_path="$tmp/bin:$PATH"
out="$tmp/out5"
prep "$out"
(launch_exec --launcher pdsh --term_grace 1 "$pe" "$out" --var FROM_CWD --fail 2:5 --sleep 60) \
    > /dev/null 2> "$tmp/stderr5"
rc=$?
[ $rc -eq 5 ] || { fail "launch 5 (pdsh) exited $rc, expected 5"; cat "$tmp/stderr5"; }
for r in 0 1 2 3; do
    f="$out/rank$r.env"
    [ "$(val "$f" RANK)" = "$r" ] || fail "launch 5 (pdsh): rank $r: RANK='$(val "$f" RANK)'"
    [ "$(val "$f" CROSS_RANK)" = "$((r / 2))" ] || fail "launch 5 (pdsh): rank $r: CROSS_RANK='$(val "$f" CROSS_RANK)'"
    [ "$(val "$f" FROM_CWD)" = "it's here" ] || fail "launch 5 (pdsh): rank $r: FROM_CWD='$(val "$f" FROM_CWD)'"
done
all_gone "$out" || fail "launch 5 (pdsh): ranks survived the failure of rank 2"
for r in 0 1 3; do [ -f "$out/rank$r.term" ] || fail "launch 5 (pdsh): rank $r got no SIGTERM"; done
launch_path=$PATH

# ---- 6. --optd: a zero-optd on each host, started through ssh like the
# ranks, used by every rank over TCP with the job token, stopped with the job ----
if [ -n "$optd_client" ]; then
    out="$tmp/out6"
    prep "$out"
    optd_list="$net.2:7100,$net.1:7101"
    # the ranks and servers reach each other over the veth pair, not lo
    (UCX_NET_DEVICES=all ZERO_LAUNCH_OPTD_EXE="$optd_exe" launch_exec --term_grace 1 --optd "$optd_list" "$optd_client" "$out") \
        > /dev/null 2> "$tmp/stderr6"
    rc=$?
    [ $rc -eq 0 ] || { fail "launch 6 (--optd) exited $rc"; cat "$tmp/stderr6"; }
    for r in 0 1 2 3; do
        grep -qx "SERVERS=$optd_list" "$out/rank$r.ok" 2>/dev/null || fail "launch 6 (--optd): rank $r did not use the servers"
    done
    for a in "$net.2:7100" "$net.1:7101"; do
        grep -q "^\[optd $a\] zero-optd: stopped" "$tmp/stderr6" || fail "launch 6 (--optd): server $a was not stopped"
    done
    pgrep -f "zero-optd --listen $net" >/dev/null && fail "launch 6 (--optd): a zero-optd outlived the job"
fi

if [ $failures -ne 0 ]; then
    echo "two_host: $failures check(s) failed"
    exit 1
fi
echo "two_host: all checks passed"
exit 0
