"""The ``torchdata-s3ext`` command (also ``python -m torchdata_s3ext``): make the article's synthetic dataset,
benchmark every way of reading it, serve a local S3 for trying things by hand, and a demo of all three.

Parsing and checking the options import nothing heavy; each command imports what it needs once they are
found right, so ``--help``, ``--version`` and a mistake answer at once and a mistake leaves nothing behind."""
import argparse
import sys
from typing import List, Optional

from .cli_checks import answering_mistakes, check_arguments
from .cli_parser import build_parser, dataset_spec, s3_config
from .writing_cli import WRITING_COMMANDS

__all__ = ["main", "build_parser", "s3_config", "dataset_spec"]


def _make_dataset(args: argparse.Namespace) -> int:
    from .dataset import write_dataset

    urls = write_dataset(args.dest, dataset_spec(args), s3_config(args), jobs=args.jobs, progress=not args.no_progress)
    print(f"wrote {len(urls)} shards: {urls[0]} .. {urls[-1]}" if len(urls) > 1 else f"wrote {urls[0]}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    if args.list_methods:
        from .bench.methods import METHODS

        for name, (description, _, _) in METHODS.items():
            print(f"{name:<24} {description}")
        return 0
    from .cli_bench import run_bench

    return run_bench(args)


def _serve(args: argparse.Namespace) -> int:
    from .servers import serve

    return serve(args)


def _demo(args: argparse.Namespace) -> int:
    from .cli_bench import run_bench

    print(f"demo: {args.shards} shards x {args.samples_per_shard} samples of {args.size}x{args.size} "
          f"in a local {args.server} server; methods: {' '.join(args.methods)}", flush=True)
    return run_bench(args)


COMMANDS = {"make-dataset": _make_dataset, "bench": _bench, "serve": _serve, "demo": _demo, **WRITING_COMMANDS}


def checked_arguments(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The options of ``argv``, parsed and checked: ``SystemExit`` after ``--help`` or ``--version``, or with one
    line naming a mistake. Imports nothing heavy (the installed command runs it before the package's root)."""
    args = build_parser().parse_args(argv)
    check_arguments(args)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = checked_arguments(argv)
    return answering_mistakes(lambda: COMMANDS[args.command](args), args.command, args.debug)


if __name__ == "__main__":
    sys.exit(main())
