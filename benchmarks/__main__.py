"""`python -m benchmarks MODE SPEC_JSON OUT_JSON`: one measurement in this fresh process (see process.py)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from benchmarks.data import data_wait, seeding_cost
from benchmarks.data_scale import startup, throughput
from benchmarks.features import measure_features
from benchmarks.loops import Case, measure_case
from benchmarks.setup import optimizer_setup_cost, schedule_cost, startup_phases


def main(argv: list[str]) -> int:
    mode, spec, out = argv[0], json.loads(argv[1]), Path(argv[2])
    if mode == "case":
        profile_dir = Path(spec["profile_dir"]) if spec.get("profile_dir") else None
        with tempfile.TemporaryDirectory(prefix="bench_case_") as tmp:
            result = measure_case(Case(**spec["case"]), Path(tmp), profile_dir)
    elif mode == "features":
        with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
            result = measure_features(Case(**spec["case"]), Path(tmp))
    elif mode == "data_scale":
        result = {"startup": startup(spec["files"]), "throughput": throughput(spec["images"])}
    elif mode == "setup":
        result = {"optimizer": optimizer_setup_cost(), "schedule": schedule_cost()}
    elif mode == "phases":
        result = startup_phases(spec["recipe"], spec["overrides"])
    elif mode == "data":
        result = data_wait(spec["recipe"], spec["settings"], spec["epochs"], spec["skip"])
        result["seeding"] = seeding_cost(spec["recipe"], [1, 2])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
