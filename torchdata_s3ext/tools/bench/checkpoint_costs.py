"""What a checkpoint costs as the dataset grows: one reader's ``state_dict()`` time and size, a state merged from
every reader of a job, and an epoch under ``StatefulDataLoader`` (a snapshot every step) against the plain
``DataLoader``, over local shards (``python -m torchdata_s3ext.tools.bench.checkpoint_costs``; docs/checkpoint.md).

The shards are one small tar (``--samples`` samples), linked under as many names as asked: every name is a
shard of its own to the pipe, and the disk holds one file.
"""
import argparse
import json
import os
import pickle
import statistics
import tempfile
import time
from typing import Any, Dict, List, Sequence

__all__ = ["main", "measure_state", "measure_merged", "measure_epochs"]


def make_shards(folder: str, count: int, samples: int) -> List[str]:
    """``count`` shard names in ``folder``, each a link to one tar of ``samples`` samples."""
    from ...testing import tar_bytes

    os.makedirs(folder, exist_ok=True)
    source = os.path.join(folder, "source.tar")
    if not os.path.exists(source):
        with open(source, "wb") as shard:
            shard.write(tar_bytes([(f"s{index:04d}", {"cls": b"%d" % index, "txt": b"x" * 100}) for index in range(samples)]))
    urls = []
    for number in range(count):
        url = os.path.join(folder, f"shard-{number:07d}.tar")
        if not os.path.lexists(url):
            os.symlink(source, url)
        urls.append(url)
    return urls


def _pipe(urls: Sequence[str], rank: int, world_size: int, buffer: int) -> Any:
    from ...pipeline import wds_pipe

    return wds_pipe(list(urls), backend="local", decode=False, shuffle_buffer=buffer, seed=0, rank=rank, world_size=world_size)


def measure_state(urls: Sequence[str], readers: int, buffer: int, taken: int, calls: int = 2000) -> Dict[str, Any]:
    """One reader of ``readers`` after ``taken`` samples (fewer if its share has fewer): its ``state_dict()``'s
    time (mean of ``calls``) and pickled size."""
    pipe = _pipe(urls, 1, readers, buffer)
    samples = iter(pipe)
    for _ in range(taken):
        if next(samples, None) is None:
            break
    started = time.perf_counter()
    for _ in range(calls):
        state = pipe.state_dict()
    seconds = (time.perf_counter() - started) / calls
    return {"shards": len(urls), "readers": readers, "state_dict_us": round(seconds * 1e6, 1),
            "state_bytes": len(pickle.dumps(state))}


def measure_merged(urls: Sequence[str], readers: int, buffer: int, taken: int) -> Dict[str, Any]:
    """Every reader of ``readers`` after ``taken`` samples each: the state merged from all of theirs, pickled."""
    from ...epochs import merge_states

    states = []
    for reader in range(readers):
        pipe = _pipe(urls, reader, readers, buffer)
        samples = iter(pipe)
        for _ in range(taken):
            if next(samples, None) is None:
                break
        states.append(pipe.state_dict())
    merged = merge_states(states)
    return {"shards": len(urls), "readers": readers, "merged_bytes": len(pickle.dumps(merged))}


def _epoch_seconds(urls: Sequence[str], loader_name: str, workers: int, buffer: int) -> float:
    from torch.utils.data import DataLoader
    from torchdata.stateful_dataloader import StatefulDataLoader

    loader_class = StatefulDataLoader if loader_name == "StatefulDataLoader" else DataLoader
    loader = loader_class(_pipe(urls, 5, 64, buffer), batch_size=None, num_workers=workers,
                          multiprocessing_context="fork")
    started = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - started


def measure_epochs(urls: Sequence[str], workers: int, buffer: int, runs: int = 3) -> Dict[str, Any]:
    """One rank of 64's epoch, median of ``runs`` each, under ``DataLoader`` and ``StatefulDataLoader``
    (interleaved, so that the machine's load falls on both alike)."""
    times: Dict[str, List[float]] = {"DataLoader": [], "StatefulDataLoader": []}
    for _ in range(runs):
        for name in times:
            times[name].append(_epoch_seconds(urls, name, workers, buffer))
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {"shards": len(urls), "workers": workers, **{f"{name}_s": round(value, 3) for name, value in medians.items()},
            "ratio": round(medians["StatefulDataLoader"] / medians["DataLoader"], 3)}


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, nargs="*", default=[1000, 100_000], help="shard counts to measure")
    parser.add_argument("--samples", type=int, default=40, help="samples per shard (enough that a reader's buffer fills)")
    parser.add_argument("--buffer", type=int, default=100, help="shuffle buffer")
    parser.add_argument("--readers", type=int, default=512, help="readers (ranks x workers) a merged state is of")
    parser.add_argument("--state-readers", type=int, default=64,
                        help="readers the shards are split over for one reader's state (few enough that its share "
                             "outlasts the samples taken)")
    parser.add_argument("--epoch-samples", type=int, nargs="*", default=[4, 40],
                        help="samples per shard of the epochs timed (few: opening shards dominates; many: each step)")
    parser.add_argument("--merged-shards", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--epoch-shards", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--folder", help="where the shard links go (default: a new temporary folder)")
    args = parser.parse_args(argv)
    folder = args.folder or tempfile.mkdtemp(prefix="checkpoint-costs-")
    urls = make_shards(folder, max(args.shards + args.merged_shards + [args.epoch_shards]), args.samples)
    results: Dict[str, Any] = {"state": [], "merged": []}
    for count in args.shards:
        results["state"].append(measure_state(urls[:count], args.state_readers, args.buffer, taken=args.buffer * 2))
        print(json.dumps(results["state"][-1]), flush=True)
    for count in args.merged_shards:
        results["merged"].append(measure_merged(urls[:count], args.readers, args.buffer, taken=args.buffer // 2))
        print(json.dumps(results["merged"][-1]), flush=True)
    results["epochs"] = []
    for samples in args.epoch_samples if args.epoch_shards else []:
        epoch_urls = make_shards(os.path.join(folder, f"epochs-{samples}"), args.epoch_shards, samples)
        results["epochs"].append(dict(measure_epochs(epoch_urls, args.workers, args.buffer, args.runs), samples_per_shard=samples))
        print(json.dumps(results["epochs"][-1]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
