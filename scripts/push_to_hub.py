"""Upload a run directory to the Hugging Face Hub as a timm model: `hf-hub:REPO_ID` then loads with timm.

scripts/push_to_hub.py runs/quickstart user/quickstart-resnet10t --license apache-2.0 [--private] [--dry-run]
(log in first with `hf auth login`, or set HF_TOKEN)
"""

from __future__ import annotations

import sys

from trainer.errors import exit_on_recipe_error
from trainer.recipe.cli import ArgumentParser


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    parser.add_argument("repo_id", metavar="REPO_ID", help="the Hub model repository, user/name or org/name")
    parser.add_argument(
        "--license",
        metavar="ID",
        help="the weights' license as a Hub identifier (apache-2.0, mit, cc-by-nc-4.0, other, ...); required"
        " unless the card states one (timm's license of the initial weights, or one written into README.md)",
    )
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", help="branch to commit to (default: main)")
    parser.add_argument("--message", default="Upload a trainer run", help="commit message")
    parser.add_argument(
        "--dry-run", action="store_true", help="check the folder and list the upload; send nothing"
    )
    args = parser.parse_args(argv)
    with exit_on_recipe_error():
        from trainer.files import WriteError
        from trainer.outputs.hub import PushError, plan_upload, push

        try:
            uploads, notes = plan_upload(args.run_dir, args.repo_id, license=args.license)
        except WriteError as err:  # the card or config.json of an older run could not be written
            print(f"push error: {err}", file=sys.stderr)
            return 1
    for note in notes:
        print(note)
    verb = "would upload" if args.dry_run else "uploading"
    print(f"{verb} {len(uploads)} files to https://huggingface.co/{args.repo_id}:")
    for upload in uploads:
        print(f"  {upload.name:<24} {upload.size:>14,} bytes")
    if args.dry_run:
        return 0
    try:
        url = push(uploads, args.repo_id, private=args.private, revision=args.revision, message=args.message)
    except PushError as err:
        print(f"push error: {err}", file=sys.stderr)
        return 1
    print(f"done: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
