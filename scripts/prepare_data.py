"""Write an image folder, an MMPretrain annotation file or parquet files as parquet shards for
`data.streaming`.

python scripts/prepare_data.py SRC OUT_DIR [--shard-size N | --num-shards N] [--split NAME]
python scripts/prepare_data.py DATA_ROOT OUT_DIR --ann-file meta/train.txt --data-prefix train
python scripts/prepare_data.py data/digits OUT_DIR     (parquet: a file, a folder of split files, a glob)

Images are kept as their encoded bytes (nothing is decoded), rows are shuffled (--seed), and shards are
named like train-00000-of-00008.parquet, of sizes that differ by at most one row, so that a recipe's
`data.path = OUT_DIR` with `data.streaming = true` reads them.
"""

from __future__ import annotations

import sys

from trainer.recipe.cli import ArgumentParser


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument(
        "src",
        metavar="SRC",
        help="image folder (<split>/<class>/<image>), data root (with --ann-file), or parquet: a file, a"
        " folder of split files (train.parquet, validation-*.parquet, ...) or a glob",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="directory the shards are written to")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--shard-size", type=int, default=1000, metavar="N", help="most rows per shard (1000)")
    size.add_argument("--num-shards", type=int, metavar="N", help="this many shards (per split)")
    parser.add_argument(
        "--split",
        metavar="NAME",
        help="write only this split of a folder; the name of the one split of --ann-file (train) or of"
        " parquet files of one split (the split their name says, else train)",
    )
    parser.add_argument("--ann-file", metavar="FILE", help="annotation file (relative/path label), under SRC")
    parser.add_argument(
        "--data-prefix", default="", metavar="DIR", help="with --ann-file: image folder, under SRC"
    )
    parser.add_argument(
        "--image-column", metavar="NAME", help="parquet input: the column of images (image); written as image"
    )
    parser.add_argument(
        "--label-column",
        metavar="NAME",
        help="parquet input: the column of integer labels (label); written as label, class names kept",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the row shuffle (0)")
    parser.add_argument("--no-shuffle", action="store_true", help="keep the source's row order")
    parser.add_argument("--overwrite", action="store_true", help="replace existing shards of the split")
    args = parser.parse_args(argv)
    for flag in ("shard_size", "num_shards"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')}: must be >= 1")
    if args.data_prefix and args.ann_file is None:
        parser.error("--data-prefix: only used with --ann-file")

    from trainer.data.prepare import PrepareError, is_parquet_input, source_splits, write_parquet_shards

    try:
        parquet = args.ann_file is None and is_parquet_input(args.src)
        for flag in ("image_column", "label_column"):
            if getattr(args, flag) is not None and not parquet:
                parser.error(f"--{flag.replace('_', '-')}: only used with parquet input (SRC is not parquet)")
        splits = source_splits(
            args.src,
            ann_file=args.ann_file,
            data_prefix=args.data_prefix,
            split=args.split,
            image_column=args.image_column or "image",
            label_column=args.label_column or "label",
        )
        for split, dataset in splits.items():
            files = write_parquet_shards(
                dataset,
                args.out_dir,
                split,
                shard_size=args.shard_size if args.num_shards is None else None,
                num_shards=args.num_shards,
                seed=None if args.no_shuffle else args.seed,
                overwrite=args.overwrite,
                image_root=None if parquet else args.src,  # parquet rows keep their own image paths
            )
            print(
                f"{split}: {len(dataset)} rows in {len(files)} shard(s): {files[0].parent}/{split}-*.parquet"
            )
    except PrepareError as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
