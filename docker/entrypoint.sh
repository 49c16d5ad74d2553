#!/usr/bin/env bash
# Container entry point: scripts/launch.py on every visible GPU (one process without a GPU), exec'd so that
# the trainer (one process) or the launcher (several) is PID 1 and receives `docker stop`'s SIGTERM; the exit
# code is the trainer's (0 done, 2 bad input, 75 stopped after a checkpoint, 1 error).
# ACCELERATE_CONFIG=/app/launch/fsdp.yaml (any `accelerate config` file) sets the processes instead.
set -euo pipefail
cd /app
umask 0002  # what the run writes is readable by the group that shares the runs folder
if [ ! -w "${HOME:-/}" ]; then
    export HOME=/tmp  # an arbitrary --user has no home of its own
fi
if [ -n "${ACCELERATE_CONFIG:-}" ]; then
    exec python scripts/launch.py --config_file "$ACCELERATE_CONFIG" scripts/train.py "$@"
fi
exec python scripts/launch.py scripts/train.py "$@"
