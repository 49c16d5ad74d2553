"""Upload a run directory to the Hugging Face Hub as a timm model repository (scripts/push_to_hub.py).

What goes up: config.json, the model card README.md (its usage naming `hf-hub:REPO_ID`, its license set),
the final weights (and the EMA's), recipe.toml, metrics.jsonl, run_info.json and curves.png where present;
never the checkpoints (optimizer state). The folder is checked first, offline: timm reads its config.json and
the weights' keys and shapes are the model's, so what is uploaded loads with
`timm.create_model("hf-hub:REPO_ID", pretrained=True)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import RecipeError
from trainer.outputs.export import (
    CARD_FILE,
    CARD_MARK,
    CONFIG_FILE,
    EMA_WEIGHTS_FILE,
    LICENSES_URL,
    METRICS_FILE,
    RECIPE_FILE,
    RUN_PLACEHOLDER,
    WEIGHTS_FILE,
    license_line,
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
LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]*")
"""The form of the Hub's license identifiers (apache-2.0, cc-by-nc-4.0, openrail++, llama3.1, other)."""
LICENSE_HINT = f"e.g. apache-2.0, mit, cc-by-4.0, cc-by-nc-4.0, or other; the Hub's list: {LICENSES_URL}"


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


def plan_upload(
    run_dir: str | Path, repo_id: str, license: str | None = None
) -> tuple[list[Upload], list[str]]:
    """The files to upload and notes on what was done to the folder first (a run from before config.json and
    README.md were written gets them now) and on the card's license. RecipeError (exit 2) for a folder that
    is not a loadable run, or a card without a license when `license` is None."""
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
    elif is_older_card((run_dir / CARD_FILE).read_text(errors="replace")):
        write_model_folder(model_from_recipe(cfg), run_dir)
        notes.append(f"rewrote {CARD_FILE} in {run_dir} (an older trainer's card, which named local paths)")
    check_model_folder(run_dir)
    card, card_notes = hub_card(run_dir, repo_id, license)
    uploads = []
    for name in UPLOAD_FILES:
        path = run_dir / name
        if path.is_file():
            uploads.append(Upload(name, card.encode() if name == CARD_FILE else path))
    return uploads, notes + card_notes


def is_older_card(text: str) -> bool:
    """Whether `text` is a card of ours from before cards named no local path (its usage named the run's
    folder as it was on the machine that trained it)."""
    return CARD_MARK in text and f"local-dir:{RUN_PLACEHOLDER}" not in text


def hub_card(run_dir: Path, repo_id: str, license: str | None) -> tuple[str, list[str]]:
    """The run's card as the repository shows it: read with huggingface_hub's `ModelCard`, its usage naming
    `hf-hub:REPO_ID`, its model-index the repository's name, and a license: `license` (a Hub identifier), else
    the card's own (the initial weights', or one written into it); neither is a RecipeError on --license."""
    from huggingface_hub import ModelCard

    if license is not None and not LICENSE_ID.fullmatch(license):
        raise RecipeError(
            "--license", f"{license!r} is not a Hub license identifier ({LICENSE_HINT})", file="command line"
        )
    try:
        card = ModelCard.load(run_dir / CARD_FILE)
    except (ValueError, TypeError) as err:  # YAML or model-index that huggingface_hub cannot read
        raise RecipeError(CARD_FILE, f"cannot read its metadata: {err}", file=str(run_dir)) from None
    notes = []
    if license is None and not card.data.license:
        raise RecipeError(
            "--license",
            f"{CARD_FILE} states no license: pass the one these weights are shared under ({LICENSE_HINT});"
            " weights trained from others' weights or data may be bound by their terms",
            file="command line",
        )
    if license is None:
        notes.append(f"license: {card.data.license} (from {CARD_FILE}; --license ID sets another)")
    else:
        card.data.license = license
        shown = license_line(license, "set by scripts/push_to_hub.py --license")
        card.text = re.sub(r"^- \*\*License:\*\* .*$", lambda _: shown, card.text, count=1, flags=re.M)
    if card.data.eval_results:
        card.data.model_name = repo_id.split("/")[-1]
    for ema in (True, False):
        local = usage(f"local-dir:{RUN_PLACEHOLDER}", ema)
        if local in card.text:
            card.text = card.text.replace(local, usage(f"hf-hub:{repo_id}", ema))
            break
    else:
        notes.append(f"{CARD_FILE}: its usage section was edited; left as it is (naming no hf-hub:{repo_id})")
    return str(card), notes


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
