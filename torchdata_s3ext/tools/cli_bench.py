"""``bench`` and ``demo``: the shards found (or made and put in a server the bench starts), every method
measured in a process of its own, then the table, the comparisons, ``results.json`` and the chart.

Called once ``cli_checks.check_arguments`` found the options right, so a mistake never gets this far.
"""
import argparse
import contextlib
import dataclasses
import os
import platform
import tempfile
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .bench.cpus import affinity, format_cpus
from .bench.link import link_label, through_link
from .bench.methods import NO_DECODE, RAW_METHODS, MethodContext, check_method_names
from .cli_parser import dataset_spec, s3_config
from .servers import server_config, start_server

__all__ = ["run_bench", "BENCH_BUCKET"]

#: the bucket a started server holds the dataset in when SRC is a local folder
BENCH_BUCKET = "bench"


class Sources(NamedTuple):
    """Where the methods read: the shards' context, the variables their processes need, and the CPUs the
    server the bench started was seen to run on (``None`` without one)."""

    context: MethodContext
    env: Dict[str, str]
    server_cpus_seen: Optional[Tuple[int, ...]] = None


def _server_bucket_and_prefix(src: Optional[str]) -> Tuple[str, str]:
    from ..s3.url import is_s3_url

    if src and is_s3_url(src):
        bucket, _, prefix = src[len("s3://"):].partition("/")
        return bucket, prefix.strip("/")
    return BENCH_BUCKET, "dataset"


def _local_dataset(args: argparse.Namespace, stack: contextlib.ExitStack) -> List[str]:
    """SRC's shards when it is a folder holding some; else a dataset made from the options, in SRC or a temporary folder."""
    from ..s3.listing import list_shards
    from ..s3.url import is_s3_url
    from .dataset import write_dataset

    local_src = args.src if args.src and not is_s3_url(args.src) else None
    if local_src and os.path.isdir(local_src) and any(name.endswith(".tar") for name in os.listdir(local_src)):
        return list_shards(local_src)
    folder = local_src or stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-dataset-"))
    return write_dataset(folder, dataset_spec(args), jobs=args.jobs)


def _sources_on_server(args: argparse.Namespace, stack: contextlib.ExitStack) -> Sources:
    """Start ``args.server`` (on ``--server-cpus``) and upload the local dataset to it; the local copy is the
    methods' mount."""
    from .dataset import upload_shards

    local_paths = _local_dataset(args, stack)
    bucket, prefix = _server_bucket_and_prefix(args.src)
    server = start_server(args.server, [bucket], stack, cpus=args.server_cpus)
    config = server_config(server)
    dest = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    seen = affinity(server.pid)
    on_cpus = f" (on CPUs {format_cpus(seen)})" if args.server_cpus and seen else ""
    print(f"uploading {len(local_paths)} shards to {dest} on {args.server} at {server.endpoint_url}{on_cpus}", flush=True)
    urls = upload_shards(local_paths, dest, config, jobs=args.jobs)
    context = MethodContext(urls=tuple(urls), mount_paths=tuple(local_paths), endpoint_url=server.endpoint_url,
                            region=config.region, mix=_mix(args))
    return Sources(context, server.env(), seen)


def _mix(args: argparse.Namespace) -> Any:
    from .bench.ours import parse_mix

    return parse_mix(args.mix) if getattr(args, "mix", None) else None


def _sources(args: argparse.Namespace) -> Sources:
    """The shards as given: an s3:// SRC (plus --mount), or a local SRC (local methods only)."""
    from ..s3.listing import list_shards
    from ..s3.url import is_s3_url

    config = s3_config(args).resolved()
    if is_s3_url(args.src):
        urls = tuple(list_shards(args.src, config=config))
        mount = tuple(list_shards(args.mount)) if args.mount else None
    else:
        urls, mount = (), tuple(list_shards(args.mount or args.src))
    context = MethodContext(urls=urls, mount_paths=mount, endpoint_url=config.endpoint_url, region=config.region,
                            profile=config.profile, anonymous=config.anonymous, mix=_mix(args))
    # Methods that make their own clients (the AWS CLI, the CRT, torchdata's native handler) read the profile here.
    return Sources(context, {"AWS_PROFILE": config.profile} if config.profile else {})


def _machine() -> str:
    import torch

    return f"{platform.machine()} {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, Python {platform.python_version()}, torch {torch.__version__}"


def _pinning(args: argparse.Namespace) -> str:
    """The pinning in words (``server on CPUs 1, client on CPUs 0``), empty without it."""
    pinned = (("server", args.server_cpus), ("client", args.client_cpus))
    return ", ".join(f"{who} on CPUs {format_cpus(cpus)}" for who, cpus in pinned if cpus)


def _cpus_label(args: argparse.Namespace) -> str:
    """The pinning, for the table's title and the chart's: empty without it."""
    return f"; {_pinning(args)}" if _pinning(args) else ""


def _print_progress(result: Dict[str, Any]) -> None:
    rate = result.get("samples_per_s")
    shown = f"{rate:.1f} samples/s" if rate is not None else f"{result['status']}: {result.get('error', '')}"
    print(f"  {result['method']:<24} {result.get('num_workers', '-')!s:>2} workers  {shown}", flush=True)


def _bench_jobs(args: argparse.Namespace, methods: Sequence[str], context: MethodContext) -> List[Any]:
    """A job per method and worker count; ``raw`` and ``raw-parallel`` once, without workers or decode (the ceilings)."""
    from .bench.runner import BenchJob

    worker_counts = list(dict.fromkeys(args.num_workers))
    return [
        BenchJob(method=name, context=context, batch_size=args.batch_size, num_workers=workers, batches=args.batches,
                 window=args.window, time_limit=args.time_limit, train_step=args.train_step,
                 decoder=NO_DECODE if name in RAW_METHODS else args.decode)
        for name in methods
        for workers in ([0] if name in RAW_METHODS else worker_counts)
    ]


def _measure_decoders(args: argparse.Namespace, context: MethodContext, env: Dict[str, str]) -> Dict[str, Any]:
    """The decode measurement in a process of its own (on ``--client-cpus``); its failure is a result, not an error."""
    from .bench.child import ChildFailed, run_in_child
    from .bench.decoders import DecodeJob

    job = DecodeJob(context=context, decoders=tuple(dict.fromkeys(args.decoders)), samples=args.decode_samples,
                    rounds=args.decode_rounds)
    print(f"timing decode ({', '.join(job.decoders)}, against plain PIL) on {job.samples} samples of the first shard",
          flush=True)
    try:
        return run_in_child("torchdata_s3ext.tools.bench.decoders", job.to_json(), args.time_limit + 120, env,
                            cpus=args.client_cpus)
    except ChildFailed as error:
        return {"error": str(error), "error_detail": error.detail}


def _measure(args: argparse.Namespace, methods: Sequence[str]) -> Tuple[List[Dict[str, Any]], Optional[Dict[str, Any]], Sources]:
    """Every method's rows, the decode measurement, and where they read; servers and proxies stopped after."""
    from .bench.report import with_ratios
    from .bench.runner import run_methods

    with contextlib.ExitStack() as stack:
        sources = _sources_on_server(args, stack) if args.server else _sources(args)
        context, env = through_link(args, sources.context, sources.env, stack)
        context = dataclasses.replace(
            context, part_size=int(args.part_size * (1 << 20)) if args.part_size else None, concurrency=args.concurrency,
            memory_budget=int(args.memory_budget * (1 << 20)) if args.memory_budget else None,
            cache_dir=args.cache_dir, cache_limit_bytes=args.cache_limit,
        )
        decoders = _measure_decoders(args, context, env) if args.decoders else None
        jobs = _bench_jobs(args, methods, context)
        print(f"measuring {len(methods)} methods over {len(context.urls or context.mount_paths or ())} shards, "
              f"each at each worker count in its own process{', ' + _pinning(args) if _pinning(args) else ''}", flush=True)
        rows = with_ratios(run_methods(jobs, env=env, on_result=_print_progress, show_progress=True, cpus=args.client_cpus))
    return rows, decoders, sources._replace(context=context)


def run_bench(args: argparse.Namespace) -> int:
    """The bench as ``args`` say; 0 when at least one method was measured."""
    from .bench.report import comparison_lines, format_decoder_table, format_table, write_chart, write_json

    methods = check_method_names(args.methods)
    rows, decoders, sources = _measure(args, methods)
    machine = _machine()
    workers = "/".join(str(count) for count in dict.fromkeys(args.num_workers))
    settings_line = f"batch {args.batch_size}, {workers} workers, decode {args.decode}"
    title = (f"empty training loop: {settings_line}, {args.batches} batches, windows of {args.window} (first excluded); "
             f"{args.server or sources.context.endpoint_url or 'AWS S3'}{link_label(args)}{_cpus_label(args)}; {machine}")
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
    settings.update(methods=methods, machine=machine, endpoint_url=sources.context.endpoint_url,
                    server_cpus_seen=sources.server_cpus_seen)
    json_path, chart_path = os.path.join(args.out, "results.json"), os.path.join(args.out, "samples_per_s.png")
    write_json(json_path, rows, settings, decoders)
    write_chart(chart_path, rows, title=f"{settings_line}{link_label(args)}{_cpus_label(args)}; {machine}")
    print(f"\nwrote {json_path} and {chart_path}")
    return 0 if any(row.get("samples_per_s") is not None for row in rows) else 1
