#!/bin/sh
# as_nodes.sh P PROGRAM [ARGS...]: runs PROGRAM with the launcher's node
# variables rewritten so that the job looks like nodes of P consecutive ranks
# (rank r on node r / P), as zero-launch would describe them on real nodes.
# The hpZ tests use it to place two "nodes" on one machine.
P=$1
shift
LOCAL_RANK=$((RANK % P))
LOCAL_SIZE=$P
CROSS_RANK=$((RANK / P))
CROSS_SIZE=$((WORLD_SIZE / P))
export LOCAL_RANK LOCAL_SIZE CROSS_RANK CROSS_SIZE
exec "$@"
