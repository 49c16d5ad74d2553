#!/usr/bin/env bash
# Training on SLURM: one scripts/launch.py per node, each starting one process per GPU (one on a CPU node).
#   sbatch --nodes 4 --gpus-per-node 8 scripts/slurm_train.sh recipes/vit_adamw.toml --set data.path=/data/in1k
#   sbatch scripts/slurm_train.sh recipes/quickstart.toml        # a CPU partition: one process
# PROCS_PER_NODE=N sets the processes per node (default: the node's GPUs, else 1).
# Requeue-safe: every start passes `--resume auto`. SLURM sends SIGUSR1 two minutes before the time limit
# (--signal): the trainers finish their step, checkpoint and exit 75, and the job requeues itself and
# continues from that checkpoint; a `scancel --signal=TERM` or USR1 does the same. Preemption and
# `scontrol requeue` requeue it through SLURM. The log is appended to across requeues.
#SBATCH --job-name=trainer
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --time=48:00:00
#SBATCH --signal=USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: sbatch scripts/slurm_train.sh RECIPE [train.py arguments ...]" >&2
    exit 2
fi
: "${SLURM_JOB_NODELIST:?run this through sbatch (or salloc), SLURM_JOB_NODELIST is not set}"

# The rendezvous host must resolve: never fall back to localhost (every node would form its own world).
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
if [ -z "$MASTER_ADDR" ]; then
    echo "slurm_train.sh: could not resolve the first node of $SLURM_JOB_NODELIST" >&2
    exit 1
fi
export MASTER_ADDR
# One port per job: two jobs sharing a node do not meet at the same rendezvous.
export MASTER_PORT=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}
gpus=${SLURM_GPUS_ON_NODE:-0}
export PROCS_PER_NODE=${PROCS_PER_NODE:-$((gpus > 0 ? gpus : 1))}
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1
# export NCCL_SOCKET_IFNAME=ib0   # set for your cluster's fabric
echo "slurm_train.sh: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NODELIST," \
    "$SLURM_NNODES node(s) x $PROCS_PER_NODE process(es), rendezvous $MASTER_ADDR:$MASTER_PORT"

# SLURM signals every process of the step (the launchers pass it on too, and the data workers ignore it);
# the batch shell waits for the step instead of dying of a SIGTERM. When one node's launcher ends, the others
# get 120 s (--wait) to end too: after a stop they all exit 75 within seconds (not --kill-on-bad-exit, which
# would turn the other nodes' 75 into a kill); after a failure on one node the rest are stopped.
trap '' TERM
code=0
# Single quotes: $SLURM_NODEID expands inside each task, so every node gets its own machine rank.
# shellcheck disable=SC2016
srun --wait=120 bash -c '
    exec python scripts/launch.py \
        --num_machines "$SLURM_NNODES" \
        --machine_rank "$SLURM_NODEID" \
        --num_processes "$((SLURM_NNODES * PROCS_PER_NODE))" \
        --main_process_ip "$MASTER_ADDR" \
        --main_process_port "$MASTER_PORT" \
        scripts/train.py "$@" --resume auto
' slurm_train "$@" || code=$?

# 75: the trainers stopped on a signal after a checkpoint. Requeue and continue (unless SLURM already
# requeues the job itself: preemption, `scontrol requeue`).
if [ "$code" = 75 ]; then
    echo "slurm_train.sh: stopped after a checkpoint; requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID" || true
fi
exit "$code"
