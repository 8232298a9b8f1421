#!/usr/bin/env bash
# zero-launch --launcher openmpi|mpich|slurm on this machine, 2 ranks:
#   1. --dry-run prints the generated command (layout options, the variables
#      exported by name, the token hidden);
#   2. a real launch of `sh -c env` per rank: each rank must see the foreign
#      launcher's rank variables (OMPI_COMM_WORLD_RANK / PMI_RANK / SLURM_PROCID),
#      MASTER_ADDR, MASTER_PORT, the job token set in zero-launch's environment,
#      and a .deepspeed_env variable whose value holds a comma and a blank; an
#      outer RANK=7 must not reach them (the rendezvous would prefer it);
#   3. comm_rank collectives: the rendezvous and every collective over the
#      environment the foreign launcher gives (ranks 0 and 1 of one world of 2).
# Open MPI runs as mpirun.openmpi, MPICH as mpiexec.hydra (both provide
# `mpirun` through alternatives). Slurm: a one-node slurmctld + slurmd started
# here from a minimal slurm.conf in a scratch directory (root only), stopped on
# every exit path.
#
# Usage: backends.sh openmpi|mpich|slurm ZERO_LAUNCH COMM_RANK
# Exits 77 (skipped), saying why, when the launcher is not installed or cannot run here.
set -u
launcher=${1:?usage: backends.sh openmpi|mpich|slurm ZERO_LAUNCH COMM_RANK}
zl=$(realpath "${2:?}")
comm_rank=$(realpath "${3:?}")

skip() { echo "backends($launcher): SKIP: $*"; exit 77; }
failures=0
fail() { echo "backends($launcher): FAIL: $*"; failures=$((failures + 1)); }

tmp=$(mktemp -d "${ZERO_BUILD_DIR:-$PWD}/launch-backend-$launcher-XXXXXX")
daemons=()
cleanup() {
  for pid in "${daemons[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${daemons[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

case $launcher in
openmpi)
  exe=mpirun.openmpi; rank_var=OMPI_COMM_WORLD_RANK
  command -v "$exe" >/dev/null 2>&1 || skip "$exe not installed (Debian package openmpi-bin)"
  export ZERO_LAUNCH_MPIRUN=$exe
  # Open MPI refuses to run as root unless told; harmless otherwise.
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  # Ranks share this machine with others: no core binding (UCX/OpenMP threads), no oversubscription check.
  export ZERO_LAUNCH_LAUNCHER_ARGS="--bind-to none --oversubscribe"
  expect_dry="'$exe' '-n' '2' '-H' 'localhost:2' '--bind-to' 'none' '--oversubscribe' '-x' 'ZL_TEST_VAR' '-x' 'MASTER_ADDR' '-x' 'MASTER_PORT' '-x' 'CUDA_VISIBLE_DEVICES' '-x' 'ZERO_JOB_TOKEN'"
  ;;
mpich)
  exe=mpiexec.hydra; rank_var=PMI_RANK
  command -v "$exe" >/dev/null 2>&1 || skip "$exe not installed (Debian package mpich)"
  export ZERO_LAUNCH_MPIRUN=$exe
  expect_dry="'$exe' '-n' '2' '-hosts' 'localhost:2' '-genvlist' 'ZL_TEST_VAR,MASTER_ADDR,MASTER_PORT,CUDA_VISIBLE_DEVICES,ZERO_JOB_TOKEN'"
  ;;
slurm)
  exe=srun; rank_var=SLURM_PROCID
  for b in srun sinfo slurmctld slurmd; do
    command -v "$b" >/dev/null 2>&1 || skip "$b not installed (Debian package slurm-wlm)"
  done
  [ "$(id -u)" -eq 0 ] || skip "starting slurmctld and slurmd needs root"
  host=$(hostname -s)
  cpus=$(nproc)
  mkdir -p "$tmp/slurm/spool" "$tmp/slurm/state"
  # A one-node cluster without munge (auth/none, cred/none), every file under the scratch directory.
  cat >"$tmp/slurm/slurm.conf" <<CONF
ClusterName=zerotest
SlurmctldHost=$host
SlurmctldPort=$((17000 + $$ % 1000))
SlurmdPort=$((18000 + $$ % 1000))
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$tmp/slurm/state
SlurmdSpoolDir=$tmp/slurm/spool
SlurmctldPidFile=$tmp/slurm/slurmctld.pid
SlurmdPidFile=$tmp/slurm/slurmd.pid
SlurmctldLogFile=$tmp/slurm/slurmctld.log
SlurmdLogFile=$tmp/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=zt Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
  export SLURM_CONF="$tmp/slurm/slurm.conf"
  slurmctld -D -i -f "$SLURM_CONF" >"$tmp/slurm/slurmctld.out" 2>&1 &
  daemons+=($!)
  slurmd -D -f "$SLURM_CONF" >"$tmp/slurm/slurmd.out" 2>&1 &
  daemons+=($!)
  ready=0
  for _ in $(seq 100); do
    if sinfo -h -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then ready=1; break; fi
    for pid in "${daemons[@]}"; do kill -0 "$pid" 2>/dev/null ||
      skip "a Slurm daemon exited at start: $(tail -3 "$tmp/slurm/slurmctld.out" "$tmp/slurm/slurmd.out" "$tmp/slurm/"*.log 2>/dev/null | tr '\n' ' ')"; done
    sleep 0.2
  done
  [ "$ready" -eq 1 ] || skip "the one-node Slurm cluster did not become idle within 20 s: $(sinfo 2>&1 | tail -2 | tr '\n' ' ') $(tail -3 "$tmp/slurm/slurmd.log" 2>/dev/null | tr '\n' ' ')"
  expect_dry="'srun' '-N' '1' '-n' '2' '--ntasks-per-node=2' '--export=ALL,ZL_TEST_VAR,MASTER_ADDR,MASTER_PORT,CUDA_VISIBLE_DEVICES,ZERO_JOB_TOKEN'"
  ;;
*) echo "backends: unknown launcher '$launcher'"; exit 2 ;;
esac

cd "$tmp" || exit 1
token=0123456789abcdef0123456789abcdef
printf '# env file of the backend test\nZL_TEST_VAR="a,b c"\n' >.deepspeed_env
export HOME="$tmp"   # only ./.deepspeed_env is read (HOME's is the same file)

# 1. The generated command.
dry=$(ZERO_JOB_TOKEN=$token "$zl" --launcher "$launcher" --num_gpus 2 --master_port 29777 --dry-run sh -c 'env' 2>&1)
case $dry in
  *"$expect_dry 'sh' '-c' 'env'"*) ;;
  *) fail "--dry-run printed: $dry; expected it to contain: $expect_dry 'sh' '-c' 'env'" ;;
esac
case $dry in
  "env 'ZL_TEST_VAR=a,b c' 'MASTER_ADDR=127.0.0.1' 'MASTER_PORT=29777' 'CUDA_VISIBLE_DEVICES=0,1' 'ZERO_JOB_TOKEN=<hidden>' "*) ;;
  *) fail "--dry-run's variables: $dry" ;;
esac
case $dry in *"$token"*) fail "--dry-run shows the job token: $dry" ;; esac

# 2. What each rank sees.
mkdir -p out
if RANK=7 LOCAL_RANK=3 ZERO_JOB_TOKEN=$token timeout 60 "$zl" --launcher "$launcher" --num_gpus 2 --master_port 29777 \
     sh -c 'env > "out/rank.$$"' >run.log 2>&1; then
  n=0
  for f in out/rank.*; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    grep -qx "ZL_TEST_VAR=a,b c" "$f" || fail "$f: env-file variable missing or changed: $(grep ZL_TEST_VAR "$f")"
    grep -qx "MASTER_ADDR=127.0.0.1" "$f" || fail "$f: MASTER_ADDR: $(grep MASTER_ADDR "$f")"
    grep -qx "MASTER_PORT=29777" "$f" || fail "$f: MASTER_PORT: $(grep MASTER_PORT "$f")"
    grep -qx "ZERO_JOB_TOKEN=$token" "$f" || fail "$f: ZERO_JOB_TOKEN: $(grep ZERO_JOB_TOKEN "$f")"
    grep -q "^RANK=" "$f" && fail "$f: the outer RANK reached the rank: $(grep '^RANK=' "$f")"
    grep -q "^LOCAL_RANK=" "$f" && fail "$f: the outer LOCAL_RANK reached the rank"
    grep -q "^$rank_var=" "$f" || fail "$f: no $rank_var"
  done
  [ "$n" -eq 2 ] || fail "expected 2 ranks' environments, got $n: $(cat run.log)"
  ranks=$(cat out/rank.* | sed -n "s/^$rank_var=//p" | sort | tr '\n' ' ')
  [ "$ranks" = "0 1 " ] || fail "$rank_var values: '$ranks' (expected 0 and 1)"
else
  fail "launch of 'sh -c env' exits $?: $(tail -20 run.log)"
fi

# 3. The rendezvous and collectives over the foreign launcher's environment.
if timeout 90 "$zl" --launcher "$launcher" --num_gpus 2 --master_port 0 "$comm_rank" collectives >comm.log 2>&1; then
  # Both ranks of ONE world of 2: ranks that each took themselves for a world of one would
  # both print "[rank 0]".
  for r in 0 1; do
    grep -q "^\[rank $r\] collectives: all checks passed" comm.log ||
      fail "comm_rank: no '[rank $r] collectives: all checks passed': $(tail -20 comm.log)"
  done
else
  fail "comm_rank collectives exits $?: $(tail -20 comm.log)"
fi

[ "$failures" -eq 0 ] || { echo "backends($launcher): $failures failure(s)"; exit 1; }
echo "backends($launcher): OK"
