"""The ``torchdata-s3ext`` command (also ``python -m torchdata_s3ext``): make the article's synthetic dataset,
benchmark every way of reading it, serve a local S3 for trying things by hand, and a demo of all three."""
import argparse
import contextlib
import dataclasses
import os
import platform
import signal
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .bench.link import link_label, through_link
from .bench.methods import NO_DECODE
from .cli_checks import answering_mistakes
from .cli_parser import build_parser
from .writing_cli import WRITING_COMMANDS

__all__ = ["main", "build_parser"]

#: the bucket a started server holds the dataset in when SRC is a local folder
BENCH_BUCKET = "bench"


def _config(args: argparse.Namespace):
    """The :class:`S3Config` the S3 options of ``make-dataset`` and ``bench`` say."""
    from .._config import S3Config

    return S3Config(endpoint_url=args.endpoint_url, region=args.region, profile=args.profile, anonymous=args.anonymous)


def _dataset_spec(args: argparse.Namespace):
    from .dataset import DatasetSpec

    return DatasetSpec(args.shards, args.samples_per_shard, args.size, args.classes, args.seed)


def _make_dataset(args: argparse.Namespace) -> int:
    from .dataset import write_dataset

    urls = write_dataset(args.dest, _dataset_spec(args), _config(args), jobs=args.jobs, progress=not args.no_progress)
    print(f"wrote {len(urls)} shards: {urls[0]} .. {urls[-1]}" if len(urls) > 1 else f"wrote {urls[0]}")
    return 0


def _start_server(kind: str, buckets: Sequence[str], stack: contextlib.ExitStack, port: Optional[int] = None):
    """A started local server of ``kind`` holding ``buckets`` on ``port`` (``None``: a free one), stopped when
    ``stack`` closes."""
    from ..testing import LocalS3Server, RcloneServer, S3rverServer

    server = S3rverServer(buckets=buckets) if kind == "s3rver" else RcloneServer(buckets=buckets) if kind == "rclone" else LocalS3Server()
    server.port = port  # a ServerProcess picks a free port at start when this is None
    stack.enter_context(server)
    if kind != "moto":
        return server
    from ..s3.clients import boto3_client

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


def _stop_on_sigterm(signal_number: int, frame: Any) -> None:
    raise KeyboardInterrupt  # stop as Ctrl-C does: the ExitStack below stops the server process


def _serve(args: argparse.Namespace) -> int:
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        return _serve_until_stopped(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve_until_stopped(args: argparse.Namespace) -> int:
    # A stop (Ctrl-C, SIGTERM) may come at any point, even while the lines below are printed: the ExitStack
    # stops the server process whatever the point.
    try:
        with contextlib.ExitStack() as stack:
            server = _start_server(args.server, args.bucket, stack, args.port)
            print(f"{args.server} S3 server on {server.endpoint_url}; buckets: {', '.join(args.bucket) or '(none)'}")
            print("to use it from a shell:\n" + _shell_exports(server.env()))
            print("Ctrl-C stops it" + (f"; stopping by itself after {args.duration:g} s" if args.duration else ""), flush=True)
            deadline = time.monotonic() + args.duration if args.duration else None
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
    config = _config(args).resolved()
    if is_s3_url(args.src):
        urls = tuple(list_shards(args.src, config=config))
        mount = tuple(list_shards(args.mount)) if args.mount else None
    else:
        urls, mount = (), tuple(list_shards(args.mount or args.src))
    context = MethodContext(urls=urls, mount_paths=mount, endpoint_url=config.endpoint_url, region=config.region,
                            profile=config.profile, anonymous=config.anonymous)
    # Methods that make their own clients (the AWS CLI, the CRT, torchdata's native handler) read the profile here.
    return context, {"AWS_PROFILE": config.profile} if config.profile else {}


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
    """A job per method and worker count; ``raw`` and ``raw-parallel`` once, without workers or decode (the ceilings)."""
    from .bench.methods import RAW_METHODS
    from .bench.runner import BenchJob

    worker_counts = list(dict.fromkeys(args.num_workers))
    return [
        BenchJob(method=name, context=context, batch_size=args.batch_size, num_workers=workers, batches=args.batches,
                 window=args.window, time_limit=args.time_limit, train_step=args.train_step,
                 decoder=NO_DECODE if name in RAW_METHODS else args.decode)
        for name in methods
        for workers in ([0] if name in RAW_METHODS else worker_counts)
    ]


def _measure_decoders(args: argparse.Namespace, context: Any, env: Dict[str, str]) -> Dict[str, Any]:
    """The decode measurement in a process of its own; its failure is a result, not an error."""
    from .bench.decoders import DecodeJob
    from .bench.runner import ChildFailed, run_in_child

    job = DecodeJob(context=context, decoders=tuple(dict.fromkeys(args.decoders)), samples=args.decode_samples,
                    rounds=args.decode_rounds)
    print(f"timing decode ({', '.join(job.decoders)}, against plain PIL) on {job.samples} samples of the first shard",
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
            context, part_size=int(args.part_size * (1 << 20)) if args.part_size else None, concurrency=args.concurrency,
            cache_dir=args.cache_dir, cache_limit_bytes=args.cache_limit,
        )
        decoders = _measure_decoders(args, context, env) if args.decoders else None
        jobs = _bench_jobs(args, methods, context)
        print(f"measuring {len(methods)} methods over {len(context.urls or context.mount_paths or ())} shards, "
              f"each at each worker count in its own process", flush=True)
        rows = with_ratios(run_methods(jobs, env=env, on_result=_print_progress, show_progress=True))
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


COMMANDS = {"make-dataset": _make_dataset, "bench": _bench, "serve": _serve, "demo": _demo, **WRITING_COMMANDS}


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return answering_mistakes(lambda: COMMANDS[args.command](args), args.command, args.debug)


if __name__ == "__main__":
    sys.exit(main())
