"""Upload a run directory to the Hugging Face Hub as a timm model repository (scripts/push_to_hub.py).

What goes up: config.json, the model card README.md (its usage naming `hf-hub:REPO_ID`), the final weights
(and the EMA's), recipe.toml, metrics.jsonl, run_info.json and curves.png where present; never the
checkpoints (optimizer state). The folder is checked first, offline: timm reads its config.json and the
weights' keys and shapes are the model's, so what is uploaded loads with
`timm.create_model("hf-hub:REPO_ID", pretrained=True)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainer.errors import RecipeError
from trainer.outputs.export import (
    CARD_FILE,
    CONFIG_FILE,
    EMA_WEIGHTS_FILE,
    METRICS_FILE,
    RECIPE_FILE,
    WEIGHTS_FILE,
    model_from_recipe,
    read_recipe,
    usage,
    write_model_folder,
)

UPLOAD_FILES = (
    CONFIG_FILE,
    CARD_FILE,
    WEIGHTS_FILE,
    EMA_WEIGHTS_FILE,
    RECIPE_FILE,
    METRICS_FILE,
    "run_info.json",
    "curves.png",
)
"""The files of a run directory that are uploaded, where present (config.json, README.md and the weights
always are)."""


class PushError(Exception):
    """The Hub refused or could not be reached (exit code 1, one line)."""


@dataclass
class Upload:
    """One file of the upload: its name in the repository and its content (a path, or bytes)."""

    name: str
    content: Path | bytes

    @property
    def size(self) -> int:
        return len(self.content) if isinstance(self.content, bytes) else self.content.stat().st_size


def plan_upload(run_dir: str | Path, repo_id: str) -> tuple[list[Upload], list[str]]:
    """The files to upload and notes on what was done to the folder first (a run from before config.json and
    README.md were written gets them now). RecipeError (exit 2) for a folder that is not a loadable run."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise RecipeError("REPO_ID", str(err).splitlines()[0], file=repo_id) from None
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RecipeError("run_dir", "no such directory", file=str(run_dir))
    cfg = read_recipe(run_dir)
    if not (run_dir / WEIGHTS_FILE).is_file():
        raise RecipeError("run_dir", f"has no {WEIGHTS_FILE}: training has not finished", file=str(run_dir))
    notes = []
    if not (run_dir / CONFIG_FILE).is_file() or not (run_dir / CARD_FILE).is_file():
        write_model_folder(model_from_recipe(cfg), run_dir)
        notes.append(f"wrote {CONFIG_FILE} and {CARD_FILE} into {run_dir} (the run predates them)")
    check_model_folder(run_dir)
    uploads = []
    for name in UPLOAD_FILES:
        path = run_dir / name
        if not path.is_file():
            continue
        if name == CARD_FILE:  # the card's usage names the Hub repository instead of the local folder
            card = path.read_text().replace(usage(f"local-dir:{run_dir}"), usage(f"hf-hub:{repo_id}"))
            uploads.append(Upload(name, card.encode()))
        else:
            uploads.append(Upload(name, path))
    return uploads, notes


def check_model_folder(run_dir: Path) -> None:
    """timm builds the architecture from config.json (on the meta device) and every weights file has the
    model's keys and shapes (read from the safetensors headers): the folder loads once uploaded."""
    import timm
    import torch
    from safetensors import safe_open

    try:
        with torch.device("meta"):
            model = timm.create_model(f"local-dir:{run_dir}", pretrained=False)
    except Exception as err:  # noqa: BLE001 - any failure means timm cannot load the folder
        raise RecipeError(CONFIG_FILE, f"timm cannot build the model: {err}", file=str(run_dir)) from None
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for name in (WEIGHTS_FILE, EMA_WEIGHTS_FILE):
        if not (run_dir / name).is_file():
            continue
        with safe_open(str(run_dir / name), framework="pt") as f:
            theirs = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - not a dict
        bad = sorted(k for k in own.keys() | theirs.keys() if own.get(k) != theirs.get(k))
        if bad:
            shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
            raise RecipeError(
                name, f"does not fit {CONFIG_FILE}'s model: keys [{shown}] ({len(bad)})", file=str(run_dir)
            )


def push(
    uploads: list[Upload],
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    message: str = "Upload a trainer run",
) -> str:
    """Create the model repository (if needed) and upload the files in one commit; returns the commit URL."""
    from huggingface_hub import CommitOperationAdd, HfApi

    operations = [
        CommitOperationAdd(
            path_in_repo=u.name, path_or_fileobj=u.content if isinstance(u.content, bytes) else str(u.content)
        )
        for u in uploads
    ]
    try:
        api = HfApi(library_name="trainer")
        repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.create_commit(
            repo_id=repo.repo_id, operations=operations, commit_message=message, revision=revision
        )
    except Exception as err:  # noqa: BLE001 - network, authentication, permissions: one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise PushError(f"{type(err).__name__}: {first}") from None
    return str(commit.commit_url)
