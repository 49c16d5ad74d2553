#!/usr/bin/env bash
# Multi-node training on SLURM: one `accelerate launch` per node, each starting one process per GPU.
#   sbatch --nodes 4 scripts/slurm_train.sh recipes/vit_adamw.toml --set data.path=/data/imagenet
# Requeue-safe: every start passes `--resume auto`, so a preempted or requeued job continues from its
# newest complete checkpoint. SLURM sends SIGUSR1 two minutes before the time limit.
#SBATCH --job-name=trainer
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=48:00:00
#SBATCH --signal=USR1@120
#SBATCH --requeue
#SBATCH --output=logs/%x-%j.out
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
export MASTER_PORT=${MASTER_PORT:-29500}
export GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}
export NNODES=$SLURM_NNODES
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1
# export NCCL_SOCKET_IFNAME=ib0   # set for your cluster's fabric

# Single quotes: $SLURM_NODEID expands inside each task, so every node gets its own machine rank.
# shellcheck disable=SC2016
# SLURM signals every process of the step; the launcher ignores SIGUSR1 (the trap survives exec) so
# that it keeps running while each training process finishes its step, checkpoints and exits 75.
srun --kill-on-bad-exit=1 --wait=60 bash -c '
    trap "" USR1
    exec accelerate launch \
        --multi_gpu \
        --num_machines "$NNODES" \
        --num_processes "$((NNODES * GPUS_PER_NODE))" \
        --machine_rank "$SLURM_NODEID" \
        --main_process_ip "$MASTER_ADDR" \
        --main_process_port "$MASTER_PORT" \
        --rdzv_backend c10d \
        scripts/train.py "$@" --resume auto
' slurm_train "$@"
