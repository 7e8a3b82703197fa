"""Run one benchmark method in a process of its own (so its memory and CPU are its own), or all of them.

``run_methods`` starts ``python -m torchdata_s3ext.tools.bench.runner JOB.json RESULT.json`` per method (and
worker count) through :func:`.child.run_in_child`; the child counts the S3 requests of one pass over the
shards, runs the article's empty training loop (and, with a train step, its cached-vs-streamed measurement)
and writes one result dictionary, or the error that stopped it.
"""
import dataclasses
import functools
import importlib
import itertools
import json
import sys
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from ..._config import S3Config
from ...s3.stats import process_stats
from .cached import CACHED_METHODS, cached_epochs, epoch_rows
from .child import ChildFailed, child_main, run_in_child
from .cpus import affinity
from .measure import PeakMemory, cpu_seconds, payload_bytes
from .ours import NODE_METHOD, node_loader
from .methods import (METHODS, NO_DECODE, RAW_METHODS, RAW_PARALLEL, UNCOUNTED, MethodContext, build_dataset, repeated,
                      decoded_sample, unavailable_reason, with_decode)
from .progress import ProgressFile, progress_bar
from .stats import WindowClock, WindowStats, stall_fraction

__all__ = ["BenchJob", "run_method", "run_methods", "load_train_step",
           "payload_bytes", "epoch_requests", "ACCOUNTING_TIME_LIMIT"]

#: seconds the request-counting pass over the shards may take before its counts are reported as unknown
ACCOUNTING_TIME_LIMIT = 60.0


@dataclasses.dataclass(frozen=True)
class BenchJob:
    """One method's measurement settings."""

    method: str
    context: MethodContext
    batch_size: int = 4
    num_workers: int = 4
    batches: int = 500
    window: int = 100
    time_limit: float = 600.0
    train_step: Optional[str] = None
    #: ``decode_png_pair``'s decoder for every sample before batching, or ``NO_DECODE``
    decoder: str = NO_DECODE

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "BenchJob":
        fields = json.loads(text)
        return cls(context=MethodContext.from_dict(fields.pop("context")), **fields)


def load_train_step(spec: str) -> Callable[[Any], Any]:
    """``module:function`` -> the function; ``ValueError`` naming the spec when it is not one."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"--train-step must be module:function, got {spec!r}")
    function = getattr(importlib.import_module(module_name), function_name, None)
    if not callable(function):
        raise ValueError(f"--train-step {spec!r}: {function_name!r} is not a function of {module_name!r}")
    return function


def _timed(items: Iterable[Any], clock: WindowClock, limit: int, deadline: float, on_item: Callable[[Any], None]) -> bool:
    """Feed up to ``limit`` items to ``on_item``, ticking ``clock`` after each (and telling the command's
    progress bar now and then); ``False`` if the deadline cut it short."""
    progress = ProgressFile()
    for count, item in enumerate(itertools.islice(items, limit), start=1):
        on_item(item)
        clock.tick()
        progress.done(count)
        if time.monotonic() > deadline:
            return False
    return True


def _repeats(job: BenchJob) -> int:
    """Passes over the shard list that give ``job.batches`` batches even if every shard held one sample."""
    shards = len(job.context.urls or job.context.mount_paths or ()) or 1
    return -(-job.batches * job.batch_size // shards)


def _loader(job: BenchJob):
    from torch.utils.data import DataLoader

    # our pipes read an epoch of samples_per_epoch, long enough for every batch timed
    context = dataclasses.replace(job.context, repeats=_repeats(job), epoch_samples=(job.batches + 1) * job.batch_size)
    if job.method == NODE_METHOD:  # batches itself, and decodes on threads
        decode = None if job.decoder == NO_DECODE else functools.partial(decoded_sample, decoder=job.decoder)
        return node_loader(context, job.batch_size, job.num_workers, decode)
    dataset = with_decode(build_dataset(job.method, context), job.decoder)
    return DataLoader(dataset, batch_size=job.batch_size, num_workers=job.num_workers)


def _empty_loop(job: BenchJob, deadline: float) -> Dict[str, Any]:
    counts = {"samples": 0, "payload_bytes": 0}

    def count(batch: Any) -> None:
        counts["payload_bytes"] += payload_bytes(batch)
        counts["samples"] += len(batch["__key__"]) if isinstance(batch, dict) and "__key__" in batch else job.batch_size

    batches = iter(_loader(job))
    clock = WindowClock(job.window)
    complete = _timed(batches, clock, job.batches, deadline, count)
    del batches  # shuts the workers down, so their CPU time is counted below
    return {**counts, "clock": clock, "complete": complete}


def _raw_config(job: BenchJob) -> S3Config:
    return job.context.s3_config()


def _raw_loop(job: BenchJob, deadline: float) -> Dict[str, Any]:
    """One process reading the shards' bytes in turn; a "batch" is ``batch_size`` samples' worth of bytes."""
    from .raw import TarSampleCounter, raw_chunks

    config, context = _raw_config(job), job.context
    counts = {"samples": 0, "payload_bytes": 0}

    def batches_done() -> Iterable[None]:
        counter = TarSampleCounter()  # one for all shards: a tar's zero padding reads as no member
        for url in repeated(job.context.urls, _repeats(job)):
            for chunk in raw_chunks(job.method == RAW_PARALLEL, url, config, context.part_size, context.concurrency):
                counter.feed(chunk)
                counts["payload_bytes"] = counter.payload_bytes
                while counter.samples - counts["samples"] >= job.batch_size:
                    counts["samples"] += job.batch_size
                    yield None

    clock = WindowClock(job.window)
    complete = _timed(batches_done(), clock, job.batches, deadline, lambda _: None)
    return {**counts, "clock": clock, "complete": complete}


def _step_seconds(stats: WindowStats, clock: WindowClock) -> Optional[float]:
    if stats.mean is not None:
        return stats.mean / stats.window
    return clock.elapsed / len(clock.stamps) if clock.stamps else None


def _train_step_measurement(job: BenchJob, deadline: float) -> Dict[str, Any]:
    """The article's second measurement: step time on one cached batch vs. on batches streamed by the loader."""
    assert job.train_step is not None
    train_step = load_train_step(job.train_step)
    batches = iter(_loader(job))
    cached_batch = next(batches)
    cached_clock = WindowClock(job.window)
    _timed(itertools.repeat(cached_batch), cached_clock, job.batches, deadline, train_step)
    streamed_clock = WindowClock(job.window)
    _timed(batches, streamed_clock, job.batches, deadline, train_step)
    del batches
    cached = _step_seconds(cached_clock.stats(), cached_clock)
    streamed = _step_seconds(streamed_clock.stats(), streamed_clock)
    return {"cached_step_s": cached, "streamed_step_s": streamed, "stall_fraction": stall_fraction(cached, streamed)}


def _epoch_items(job: BenchJob) -> Iterable[Any]:
    from .raw import raw_chunks

    if job.method in RAW_METHODS:
        config, context = _raw_config(job), job.context
        return (chunk for url in context.urls
                for chunk in raw_chunks(job.method == RAW_PARALLEL, url, config, context.part_size, context.concurrency))
    return build_dataset(job.method, dataclasses.replace(job.context, repeats=1))


def epoch_requests(job: BenchJob, time_limit: float = ACCOUNTING_TIME_LIMIT) -> Dict[str, Any]:
    """The S3 requests (and our retries, and bytes) of one pass over the shard list, read in this process
    without workers, and their cost at S3 Standard prices; ``None`` where they are not seen or the pass ran
    out of time. Run before the timed loop, so that none of the loop's requests is still in flight to count."""
    unknown: Dict[str, Any] = {"requests_per_epoch": None, "request_stats_per_epoch": None, "cost_usd_per_epoch": None}
    if job.method in UNCOUNTED:
        return unknown
    deadline = time.monotonic() + time_limit
    before = process_stats().snapshot()
    for _ in _epoch_items(job):
        if time.monotonic() > deadline:
            return unknown
    epoch = process_stats() - before
    return {"requests_per_epoch": epoch.requests, "request_stats_per_epoch": epoch.as_dict(), "cost_usd_per_epoch": epoch.cost_usd()}


def run_method(job: BenchJob) -> Dict[str, Any]:
    """Measure ``job.method`` in this process; returns the result dictionary the report reads."""
    if job.context.cache_dir and job.method in CACHED_METHODS:
        return cached_epochs(job)
    accounting = epoch_requests(job)
    deadline = time.monotonic() + job.time_limit
    cpu_start = cpu_seconds()
    with PeakMemory() as memory:
        loop = _raw_loop(job, deadline) if job.method in RAW_METHODS else _empty_loop(job, deadline)
        cpu_s = cpu_seconds() - cpu_start  # the loop's alone: the train step's compute is not reading
        # raw yields bytes, not batches: there is nothing to train on
        train = _train_step_measurement(job, deadline) if job.train_step and job.method not in RAW_METHODS else None
    stats: WindowStats = loop["clock"].stats()
    clock: WindowClock = loop["clock"]
    batches = len(clock.stamps)
    if stats.mean is not None:
        samples_per_s = job.batch_size * stats.window / stats.mean
    else:
        samples_per_s = loop["samples"] / clock.elapsed if clock.elapsed > 0 else None
    bytes_per_sample = loop["payload_bytes"] / loop["samples"] if loop["samples"] else None
    return {
        "method": job.method,
        "description": METHODS[job.method][0],
        "num_workers": job.num_workers,
        "decoder": job.decoder,
        "status": "ok" if loop["complete"] else "time limit",
        "batches": batches,
        "samples": loop["samples"],
        "payload_bytes": loop["payload_bytes"],
        "elapsed_s": clock.elapsed,
        "window": stats.window,
        "window_times_s": stats.durations,
        "mean_window_s": stats.mean,
        "variance_window_s2": stats.variance,
        "samples_per_s": samples_per_s,
        "mb_per_s": samples_per_s * bytes_per_sample / 1e6 if samples_per_s and bytes_per_sample else None,
        # from the clock's start (the loader's iterator made, its workers started) to the first batch
        "first_batch_s": clock.stamps[0] - clock.start if clock.stamps else None,
        "peak_rss_mb": memory.peak_bytes / 1e6,
        "cpu_s": cpu_s,
        # the CPUs this process (and so its workers) could run on: --client-cpus, or all the machine lets it use
        "cpus": affinity(),
        "train_step": train,
        **accounting,
    }


def _failed(job: BenchJob, status: str, error: str, detail: Optional[str] = None) -> Dict[str, Any]:
    """A row for a method not measured: ``error`` one line for the table, ``detail`` (a traceback) for the JSON."""
    row = {"method": job.method, "description": METHODS[job.method][0], "num_workers": job.num_workers,
           "decoder": job.decoder, "status": status, "error": error}
    return {**row, "error_detail": detail} if detail else row


def run_methods(
    jobs: List[BenchJob], env: Optional[Dict[str, str]] = None, on_result: Optional[Callable[[Dict[str, Any]], None]] = None,
    show_progress: bool = False, cpus: Optional[Sequence[int]] = None,
) -> List[Dict[str, Any]]:
    """Each job in its own ``python`` process on ``cpus`` (``None``: any), one after the other; a failing
    method is a result, not an error. ``show_progress``: a bar of each method's batches on stderr, on a terminal."""
    results = []
    for job in jobs:
        reason = unavailable_reason(job.method, job.context)
        if reason is not None:
            result = _failed(job, "unavailable", reason)
        else:
            bar = progress_bar(job.batches, f"{job.method}, {job.num_workers} workers", show_progress)
            result = _run_in_child(job, env, bar, cpus)
        for row in epoch_rows(result):  # a cached method's passes, a row each
            results.append(row)
            if on_result is not None:
                on_result(row)
    return results


def _run_in_child(
    job: BenchJob, env: Optional[Dict[str, str]], progress: Optional[Callable[[Optional[int]], None]] = None,
    cpus: Optional[Sequence[int]] = None,
) -> Dict[str, Any]:
    try:
        # The child stops itself at time_limit; the margin covers start-up and worker shutdown.
        return run_in_child("torchdata_s3ext.tools.bench.runner", job.to_json(), job.time_limit + 120, env, progress, cpus)
    except ChildFailed as error:
        return _failed(job, "error", str(error), error.detail)


if __name__ == "__main__":
    child_main(*sys.argv[1:3], measure=lambda job_json: run_method(BenchJob.from_json(job_json)))
