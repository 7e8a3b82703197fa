"""Writing throughput: ``ShardWriter`` straight to S3 against ``aws s3 cp`` of the same shards from a local
folder, on a local server (``rclone serve s3`` by default: multi-threaded, file-backed), median of ``--runs``.

``python -m torchdata_s3ext.tools.write_bench [--total-mib 1200] [--runs 3] [--server rclone]``

Each run is a process of its own, so its peak RSS is its own; a ShardWriter run imports everything and makes
its sample source before its clock starts, then times the ``with ShardWriter(...)`` block (every shard
uploaded, the index written). The samples are the article's shape (a 3 MiB ``image.png`` and a 1 MiB
``label.png`` field of random bytes) sliced from one 64 MiB random block, so the writer's memory shows
rather than the samples'. ``aws s3 cp --recursive`` uploads the same shards, written once beforehand to a
local folder (and so in the page cache); its clock includes the CLI's start, reported apart (``aws s3 ls``).
Each run writes to a prefix of its own. Prints one line per method and run, then the medians, as JSON too.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Iterator, List

__all__ = ["main"]

_MIB = 1 << 20
_BLOCK = 64 * _MIB
_FIELDS = (("image.png", 3 * _MIB), ("label.png", _MIB))


def _random_block() -> memoryview:
    import numpy as np

    return memoryview(np.random.default_rng(0).bytes(_BLOCK))


def _samples(total_bytes: int, block: memoryview) -> Iterator[Dict[str, Any]]:
    """The article-shaped samples, slices of ``block`` (same bytes in every run)."""
    offset, index, written = 0, 0, 0
    while written < total_bytes:
        sample: Dict[str, Any] = {"__key__": f"sample_{index:08d}"}
        for field, size in _FIELDS:
            offset = (offset + 7919 * 4096) % (_BLOCK - size)
            sample[field] = block[offset: offset + size]
            written += size
        index += 1
        yield sample


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child_shard_writer(settings: Dict[str, Any]) -> Dict[str, Any]:
    from .._config import S3Config
    from ..writing import ShardWriter

    config = S3Config(**settings["config"]) if settings["config"] else None
    block = _random_block()  # made before the clock, and counted in the RSS before writing
    rss_before = _peak_rss_mib()
    started = time.perf_counter()
    with ShardWriter(settings["pattern"], max_bytes=settings["max_bytes"], part_size=settings["part_size"],
                     max_in_flight=settings["max_in_flight"], mtime=0, config=config) as writer:
        for sample in _samples(settings["total_bytes"], block):
            writer.write(sample)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "bytes": sum(shard.filesize or 0 for shard in writer.shards),
            "peak_rss_mib": _peak_rss_mib(), "rss_before_mib": rss_before}


def _run_child(settings: Dict[str, Any], env: Dict[str, str]) -> Dict[str, Any]:
    output = subprocess.run([sys.executable, "-m", "torchdata_s3ext.tools.write_bench", "--child", json.dumps(settings)], env=env, check=True,
                            stdout=subprocess.PIPE, text=True, timeout=3600).stdout
    return json.loads(output.strip().splitlines()[-1])


def _run_aws(arguments: List[str], env: Dict[str, str]) -> Dict[str, Any]:
    """``aws ARGUMENTS`` timed from a fresh Python wrapper, with the peak RSS of the CLI's process."""
    wrapper = ("import json, resource, subprocess, sys, time; started = time.perf_counter(); "
               "subprocess.run(sys.argv[1:], check=True); seconds = time.perf_counter() - started; "
               "print(json.dumps({'seconds': seconds, 'peak_rss_mib': "
               "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))")
    output = subprocess.run([sys.executable, "-c", wrapper, "aws", *arguments], env=env, check=True,
                            stdout=subprocess.PIPE, text=True, timeout=3600).stdout
    return json.loads(output.strip().splitlines()[-1])


def _methods(args: argparse.Namespace, bucket: str, config: Dict[str, Any], folder: str) -> Dict[str, Any]:
    """Name -> a function of the run number that measures one run."""
    base = {"total_bytes": args.total_mib * _MIB, "max_bytes": 400 * _MIB, "config": config}

    def shard_writer(part_mib: int, in_flight: int) -> Any:
        def run(number: int) -> Dict[str, Any]:
            settings = {**base, "part_size": part_mib * _MIB, "max_in_flight": in_flight,
                        "pattern": f"s3://{bucket}/sw-{part_mib}-{in_flight}-{number}/shard-%06d.tar"}
            return _run_child(settings, args.env)
        return run

    def aws_cp(number: int) -> Dict[str, Any]:
        result = _run_aws(["s3", "cp", "--recursive", "--only-show-errors", f"--endpoint-url={config['endpoint_url']}",
                           folder, f"s3://{bucket}/cp-{number}/"], args.env)
        result["bytes"] = sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder))
        return result

    return {"ShardWriter (8 MiB parts, 4 in flight)": shard_writer(8, 4),
            "ShardWriter (8 MiB parts, 10 in flight)": shard_writer(8, 10),
            "aws s3 cp --recursive (8 MiB parts, 10 in flight)": aws_cp}


def _measure(args: argparse.Namespace, server: Any, bucket: str) -> Dict[str, List[Dict[str, Any]]]:
    from ..writing import ShardWriter

    env = server.env()
    config = {"endpoint_url": server.endpoint_url, "region": env["AWS_DEFAULT_REGION"],
              "aws_access_key_id": env["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"]}
    args.env = {**os.environ, **env}
    with tempfile.TemporaryDirectory(prefix="write-bench-") as folder:
        with ShardWriter(os.path.join(folder, "shard-%06d.tar"), max_bytes=400 * _MIB, mtime=0, write_index=False) as local:
            for sample in _samples(args.total_mib * _MIB, _random_block()):
                local.write(sample)
        startup = _run_aws(["s3", "ls", f"--endpoint-url={server.endpoint_url}", f"s3://{bucket}/"], args.env)
        print(f"{len(local.urls)} shards, {args.total_mib} MiB; aws CLI start (s3 ls): {startup['seconds']:.2f} s", flush=True)
        results: Dict[str, List[Dict[str, Any]]] = {"aws s3 ls (the CLI's start)": [startup]}
        methods = _methods(args, bucket, config, folder)
        for number in range(args.runs):  # methods alternate, so that a slower moment of the machine hits each
            for name, run in methods.items():
                result = run(number)
                result["mb_per_s"] = result["bytes"] / result["seconds"] / 1e6
                results.setdefault(name, []).append(result)
                print(f"  run {number + 1}: {name:<52} {result['mb_per_s']:7.1f} MB/s  {_memory(result)}", flush=True)
    return results


def _memory(result: Dict[str, Any]) -> str:
    """Peak RSS, and for a ShardWriter run how much of it came while writing (the rest: Python, torch, boto3)."""
    rise = f" (+{result['peak_rss_mib'] - result['rss_before_mib']:.0f} writing)" if "rss_before_mib" in result else ""
    return f"peak RSS {result['peak_rss_mib']:5.0f} MiB{rise}"


def _medians(results: Dict[str, List[Dict[str, Any]]]) -> Dict[str, Dict[str, float]]:
    return {name: {key: statistics.median(run[key] for run in runs) for key in runs[0] if key != "bytes"}
            for name, runs in results.items()}


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torchdata_s3ext.tools.write_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--total-mib", type=int, default=1200, help="MiB of samples per run (default 1200: 3 shards)")
    parser.add_argument("--runs", type=int, default=3, help="runs per method; medians reported (default 3)")
    parser.add_argument("--server", choices=("rclone", "s3rver", "moto"), default="rclone")
    parser.add_argument("--json", metavar="PATH", help="also write every run and the medians here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child_shard_writer(json.loads(args.child))))
        return 0
    import contextlib

    from .servers import start_server

    bucket = "writebench"
    with contextlib.ExitStack() as stack:
        results = _measure(args, start_server(args.server, [bucket], stack), bucket)
    medians = _medians(results)
    print(f"\nmedians of {args.runs} runs, {args.server}:")
    for name, median in medians.items():
        rate = f"{median['mb_per_s']:7.1f} MB/s" if "mb_per_s" in median else f"{median['seconds']:7.2f} s"
        print(f"  {name:<52} {rate}  {_memory(median)}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"runs": results, "medians": medians, "server": args.server}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
