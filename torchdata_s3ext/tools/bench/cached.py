"""``bench --cache-dir DIR``: the ``open_s3`` methods on S3 through the local shard cache, epoch by epoch.

One child process per method and worker count measures three whole passes over the shard list, each a fresh
``DataLoader`` over the same pipe, after one unmeasured pass without the cache (so that the process's first
connections and imports, and the server's first reads of the shards, are in none of them): without the cache,
then epoch 1 (an empty cache: every shard from S3,
copied as it is read) and epoch 2 (every shard from disk, one HEAD each). Each pass reports its samples/s and
MB/s over the whole pass (worker start-up included, the same for all three), the time to its first batch,
its S3 requests and their cost (counted by the pipe, DataLoader workers included) and the cache's hits.
A miss's last read does not wait for its copy's check; after each cached pass the process waits for the checks
still pending (``finalize_after_s``, not in the pass's time), so that epoch 2 starts with every entry in place.
Each result says what the copies were checked against (``cache_check``, at the default ``cache_verify="auto"``:
the first shard's full-object CRC where its HEAD gives one this machine computes, else ``"size+ETag"``).
The cache lives in ``DIR/<method>-<workers>w``, emptied before and removed after.
"""
import dataclasses
import os
import shutil
import time
from typing import Any, Dict, List, Optional

from ...s3.backends import BACKENDS, PIPE_BACKEND
from ...s3.cache import join_finalizers
from ...s3.cache.integrity import copy_check
from ...s3.client.objects import head_object
from ...s3.stats import PipeStats
from .cpus import affinity
from .measure import PeakMemory, cpu_seconds, payload_bytes
from .methods import METHODS, MethodContext, with_decode

__all__ = ["CACHED_METHODS", "EPOCHS", "cached_epochs", "epoch_rows"]

#: the methods the cache serves: ``open_s3`` on every backend that reads ``s3://`` URLs
CACHED_METHODS = tuple(name for name in BACKENDS if name not in ("local", PIPE_BACKEND))
#: the passes, by the label their row gets after the method's name
EPOCHS = ("no cache", "cache epoch 1", "cache epoch 2")


def _pass(job: Any, dataset: Any, stats: PipeStats) -> Dict[str, Any]:
    """One whole pass of a fresh DataLoader over ``dataset``: rates, first batch, requests, peak memory, CPU."""
    from torch.utils.data import DataLoader

    before, cpu_start = stats.snapshot(), cpu_seconds()
    counts = {"samples": 0, "payload_bytes": 0}
    first_batch_s: Optional[float] = None
    with PeakMemory() as memory:
        start = time.perf_counter()
        for batch in DataLoader(dataset, batch_size=job.batch_size, num_workers=job.num_workers):
            if first_batch_s is None:
                first_batch_s = time.perf_counter() - start
            counts["samples"] += len(batch["__key__"]) if isinstance(batch, dict) and "__key__" in batch else job.batch_size
            counts["payload_bytes"] += payload_bytes(batch)
        elapsed = time.perf_counter() - start
    requests = stats - before
    return {
        **counts,
        "elapsed_s": elapsed,
        "first_batch_s": first_batch_s,
        "samples_per_s": counts["samples"] / elapsed if elapsed > 0 else None,
        "mb_per_s": counts["payload_bytes"] / elapsed / 1e6 if elapsed > 0 else None,
        "peak_rss_mb": memory.peak_bytes / 1e6,
        "cpu_s": cpu_seconds() - cpu_start,
        "requests_per_epoch": requests.requests,
        "request_stats_per_epoch": requests.as_dict(),
        "cost_usd_per_epoch": requests.cost_usd(),
        "cache_hits": requests.cache_hits,
        "cache_misses": requests.cache_misses,
    }


def cached_epochs(job: Any) -> Dict[str, Any]:
    """The result of ``job`` (a ``BenchJob`` whose context names a ``cache_dir``): one pass per :data:`EPOCHS`,
    under ``"epochs"``, for :func:`epoch_rows` to turn into rows."""
    context: MethodContext = job.context
    assert context.cache_dir is not None
    cache_dir = os.path.join(context.cache_dir, f"{job.method}-{job.num_workers}w")
    shutil.rmtree(cache_dir, ignore_errors=True)
    builder = METHODS[job.method][1]
    assert builder is not None
    passes: List[Dict[str, Any]] = []
    try:
        for label in (None,) + EPOCHS:  # None: the warm-up pass, not reported
            stats = PipeStats()
            pass_context = dataclasses.replace(context, repeats=1, cache_dir=cache_dir if label in EPOCHS[1:] else None)
            dataset = with_decode(builder(pass_context, stats), job.decoder)  # type: ignore[call-arg]
            measured = _pass(job, dataset, stats)
            if pass_context.cache_dir is not None:
                waited_from = time.perf_counter()
                join_finalizers()
                measured["finalize_after_s"] = time.perf_counter() - waited_from
            if label is not None:
                passes.append({"epoch": label, **measured})
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return {"method": job.method, "description": METHODS[job.method][0], "num_workers": job.num_workers,
            "decoder": job.decoder, "status": "ok", "cache_limit_bytes": context.cache_limit_bytes, "cpus": affinity(),
            "cache_check": _cache_check(context), "epochs": passes}


def _cache_check(context: MethodContext) -> str:
    """What the default level checks a copy of the first shard against (one HEAD, outside the passes)."""
    check = copy_check(head_object(context.urls[0], context.s3_config()), "auto")
    return check.algorithm or "size+ETag"


def epoch_rows(result: Dict[str, Any]) -> List[Dict[str, Any]]:
    """A result of :func:`cached_epochs` as a row per pass (``"boto3 cache epoch 1"``, ...); any other as it is."""
    passes = result.get("epochs")
    if not passes:
        return [result]
    common = {key: value for key, value in result.items() if key != "epochs"}
    return [{**common, **one_pass, "method": f"{result['method']} {one_pass['epoch']}"} for one_pass in passes]
