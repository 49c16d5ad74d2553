"""Start a script's processes with `accelerate launch`'s options, exit codes and signals passing through:
`python scripts/launch.py --num_processes 8 scripts/train.py recipes/vit_adamw.toml`."""

from __future__ import annotations

import sys

from trainer.launch import main

if __name__ == "__main__":
    sys.exit(main())
