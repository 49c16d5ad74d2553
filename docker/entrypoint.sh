#!/usr/bin/env bash
# Container entry point: `accelerate launch scripts/train.py "$@"` on every visible GPU.
# ACCELERATE_CONFIG=/app/launch/fsdp.yaml (or any config file) replaces the automatic choice.
set -euo pipefail
cd /app
if [ -n "${ACCELERATE_CONFIG:-}" ]; then
    exec accelerate launch --config_file "$ACCELERATE_CONFIG" scripts/train.py "$@"
fi
gpus=$(python -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -gt 1 ]; then
    exec accelerate launch --multi_gpu --num_processes "$gpus" --num_machines 1 scripts/train.py "$@"
fi
exec accelerate launch --num_processes 1 --num_machines 1 scripts/train.py "$@"
