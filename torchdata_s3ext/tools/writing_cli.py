"""The commands that write: ``convert`` (a folder of files -> shards and their index) and ``index`` (the index of
shards already written). Their options here; their work in ``convert`` and ``indexing``, imported when run, so
that ``--help`` stays quick."""
import argparse
import os
from typing import Any, Callable, Dict

__all__ = ["WRITING_COMMANDS", "add_writing_commands"]

_MIB = 1 << 20


def _positive_mib(text: str) -> int:
    """A size in MiB on the command line (``400``, ``0.5``) -> bytes."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of MiB, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of MiB, got {text!r}")
    return int(value * _MIB)


def add_writing_commands(add_command: Callable[[str, str], argparse.ArgumentParser],
                         add_s3_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``convert`` and ``index`` to the command line (``add_command(name, help)`` makes a subparser)."""
    convert = add_command("convert", "write the files of a local folder as WebDataset shards (to S3 or a folder) "
                                     "and their index")
    convert.add_argument("src", metavar="SRC", help="a local folder; a file's sample is its path up to the first "
                                                    "dot of its name")
    convert.add_argument("dest", metavar="DST", help="s3://bucket/prefix or a folder (shards shard-000000.tar ...), "
                                                     "or a pattern with one %%d field")
    convert.add_argument("--max-mib", type=_positive_mib, default=400 * _MIB, dest="max_bytes", metavar="MiB",
                         help="most MiB in a shard; a larger sample gets a shard of its own (default 400)")
    convert.add_argument("--max-samples", type=int, help="most samples in a shard (default: no limit)")
    convert.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1),
                         help="writers at once, each with its own shards (default: min(4, CPUs))")
    convert.add_argument("--part-mib", type=_positive_mib, default=8 * _MIB, dest="part_size", metavar="MiB",
                         help="MiB per uploaded part; memory is at most jobs x 6 parts (default 8)")
    convert.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_s3_options(convert)

    index = add_command("index", "write the index of shards already written (index.json beside them), from "
                                 "their tar headers")
    index.add_argument("src", metavar="SRC", help="the shards: s3://bucket/prefix/, a folder, a brace or glob pattern")
    index.add_argument("--out", metavar="URL", help="where the index goes (default: SRC/index.json, or beside "
                                                    "the shards of a pattern)")
    index.add_argument("--full-read", action="store_true",
                       help="read every shard whole (one pass) instead of its headers by ranged GETs")
    index.add_argument("--jobs", type=int, default=4, help="shards read at once (default 4)")
    index.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_s3_options(index)


def _config(args: argparse.Namespace) -> Any:
    from .._config import S3Config

    return S3Config(endpoint_url=args.endpoint_url, region=args.region, profile=args.profile,
                    anonymous=args.anonymous).resolved()


def _convert(args: argparse.Namespace) -> int:
    from .convert import convert_folder

    def report_skipped(skipped: Any) -> None:
        if skipped:
            print(f"skipping {len(skipped)} files that belong to no sample (e.g. {skipped[0]})", flush=True)

    index = convert_folder(args.src, args.dest, max_bytes=args.max_bytes, max_samples=args.max_samples,
                           jobs=args.jobs, config=_config(args), part_size=args.part_size,
                           progress=not args.no_progress, on_skipped=report_skipped)
    print(f"wrote {len(index.shards)} shards, {index.num_samples} samples, and {index.url}")
    return 0


def _index(args: argparse.Namespace) -> int:
    from .indexing import index_shards

    index, requests = index_shards(args.src, _config(args), out=args.out, jobs=args.jobs, full_read=args.full_read,
                                   progress=not args.no_progress)
    shard_bytes = sum(size or 0 for size in index.sizes)
    print(f"wrote {index.url}: {len(index.shards)} shards, {index.num_samples} samples; read {requests.gets} GETs, "
          f"{requests.heads} HEADs, {requests.lists} LISTs, {requests.bytes_received} bytes of {shard_bytes}")
    return 0


WRITING_COMMANDS: Dict[str, Callable[[argparse.Namespace], int]] = {"convert": _convert, "index": _index}
