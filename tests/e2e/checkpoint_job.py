"""A training job that checkpoints with ``StatefulDataLoader`` and dies: run by the checkpoint tests in a
process of its own (``python checkpoint_job.py SPEC.json``), once per leg of a scenario.

The spec (JSON) says which pipe to build over which local shards (``wds``, ``skip``, ``chain``, ``chain_skip``;
``mix`` of the first and second half of the shards with weights 2:1 and ``stop``; ``window``, ``mix_window`` with
``per_epoch`` samples an epoch), the loader (``num_workers``,
``multiprocessing_context``, ``batch_size``) and what to do:

- ``resume``: a ``torch.save``'d ``loader.state_dict()`` to ``loader.load_state_dict()`` first, or ``null``;
- ``merged``: a ``torch.save``'d :func:`merge_states` result to ``pipe.load_state_dict()`` before the loader is
  made (elastic resumption), or ``null``;
- ``steps``: an int: take that many batches, save ``loader.state_dict()`` to ``state_out`` and SIGKILL the
  process group (this process and its DataLoader workers: the test starts it in a session of its own);
  ``"epoch"``: the same after the whole epoch; ``null``: finish the epoch, then ``epochs_after`` more, and exit.

Every delivered sample key is appended to ``keys_out`` as it comes (flushed), as ``TAG KEY``: ``TAG`` is ``0``
for the epoch under way when the job started, ``1``, ``2``... for the following ones.

With ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` / ``MASTER_PORT`` in the environment the job first joins a gloo
process group (the DataLoader then splits the shards over the ranks too), and ``legs`` may hold several such
specs, run one after the other in this process (the rank tests: a few process launches for many legs).
"""
import json
import os
import signal
import sys
from typing import Any, Dict, List

import torch
from torch.utils.data.datapipes.iter import IterableWrapper
from torchdata.stateful_dataloader import StatefulDataLoader

from torchdata_s3ext import wds_pipe  # (importing the package registers the pipes of the hand-written chain)


def build_pipe(spec: Dict[str, Any]):
    kind, shards = spec.get("pipe", "wds"), spec["shards"]
    seed, buffer = spec.get("seed", 0), spec.get("buffer", 4)
    if kind == "wds":
        return wds_pipe(shards, seed=seed, shuffle_buffer=buffer, decode=False, backend="local")
    if kind == "skip":
        return wds_pipe(shards, seed=seed, shuffle_buffer=buffer, decode=False, backend="local", on_error="skip")
    if kind in ("mix", "mix_window"):  # the first half of the shards as source "a", the rest as "b"
        half = len(shards) // 2
        mixed = {"a": shards[:half], "b": shards[half:]}
        rule = {"stop": spec.get("stop", "first_exhausted")} if kind == "mix" else {"samples_per_epoch": spec["per_epoch"]}
        return wds_pipe(mixed, weights={"a": 2, "b": 1}, seed=seed, shuffle_buffer=buffer, decode=False,
                        backend="local", **rule)
    if kind == "window":
        return wds_pipe(shards, samples_per_epoch=spec["per_epoch"], seed=seed, shuffle_buffer=buffer, decode=False,
                        backend="local")
    if kind == "chain":
        return (
            IterableWrapper(shards).shuffle_shards(seed=seed).shard_across_readers().open_s3(backend="local")
            .load_from_tar().group_wds_samples().shuffle_samples(buffer_size=buffer, seed=seed)
        )
    if kind == "chain_skip":
        return (
            IterableWrapper(shards).shuffle_shards(seed=seed).shard_across_readers().open_s3(backend="local")
            .load_wds_shards(on_error="skip").shuffle_samples(buffer_size=buffer, seed=seed)
        )
    raise ValueError(f"unknown pipe {kind!r}")


def batch_keys(batch: Any) -> List[str]:
    keys = batch["__key__"]
    return [keys] if isinstance(keys, str) else list(keys)



def run_leg(spec: Dict[str, Any]) -> None:
    pipe = build_pipe(spec)
    if spec.get("merged"):
        pipe.load_state_dict(torch.load(spec["merged"], weights_only=False))
    workers = spec.get("num_workers", 0)
    loader = StatefulDataLoader(
        pipe, batch_size=spec.get("batch_size"), num_workers=workers,
        multiprocessing_context=spec.get("context") if workers else None, timeout=60 if workers else 0,
    )
    if spec.get("resume"):
        loader.load_state_dict(torch.load(spec["resume"], weights_only=False))
    steps = spec.get("steps")
    with open(spec["keys_out"], "a") as out:
        def deliver(tag: int, batch: Any) -> None:
            for key in batch_keys(batch):
                out.write(f"{tag} {key}\n")
            out.flush()

        if isinstance(steps, int):
            iterator = iter(loader)
            for _ in range(steps):
                deliver(0, next(iterator))
        else:
            for batch in loader:
                deliver(0, batch)
            if steps is None:
                for tag in range(1, 1 + spec.get("epochs_after", 1)):
                    for batch in loader:
                        deliver(tag, batch)
                return
    if spec.get("state_out"):
        torch.save(loader.state_dict(), spec["state_out"] + ".part")
        os.replace(spec["state_out"] + ".part", spec["state_out"])
    if spec.get("kill", True):
        sys.stdout.flush()
        os.killpg(os.getpgid(0), signal.SIGKILL)  # no cleanup, no worker shutdown: a real crash


def main() -> None:
    with open(sys.argv[1]) as spec_file:
        spec = json.load(spec_file)
    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        import datetime

        import torch.distributed as dist

        dist.init_process_group("gloo", init_method="env://", timeout=datetime.timedelta(seconds=60))
        rank = dist.get_rank()
    for leg in spec.get("legs", [spec]):
        leg = {key: (value.format(rank=rank) if distributed and isinstance(value, str) else value)
               for key, value in leg.items()}
        run_leg(leg)
        if distributed:
            dist.barrier()
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
