"""Checkpoint states in process: random shard layouts, buffers, checkpoint steps and elastic merges deliver every
sample exactly once (hypothesis); states of other pipes or versions are refused; a state is small, holds no
sample bytes and survives pickle and ``torch.save``."""
import collections
import io
import os
import pickle
import tempfile
from typing import Any, Dict, List, Optional, Tuple

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torchdata.stateful_dataloader import StatefulDataLoader

from torchdata_s3ext import CheckpointMismatch, merge_states, wds_pipe
from torchdata_s3ext.epochs.checkpoint import chain_nested, dataset_states, stage_states
from torchdata_s3ext.testing import write_tar


def write_shards(folder: str, sizes: List[int], payload: int = 40, prefix: str = "shard") -> Tuple[List[str], List[str]]:
    urls, keys = [], []
    for shard, count in enumerate(sizes):
        url = os.path.join(folder, f"{prefix}-{shard:06d}.tar")
        samples = [(f"s{shard}_{index:04d}", {"cls": b"1", "txt": f"PAYLOAD{shard}_{index:04d}".encode().ljust(payload, b"x")})
                   for index in range(count)]
        with open(url, "wb") as tar:
            write_tar(tar, samples)  # no samples: a tar with no members
        urls.append(url)
        keys += [key for key, _ in samples]
    return urls, keys


def new_pipe(urls: List[str], buffer: int, seed: int = 0, readers: Optional[Tuple[int, int]] = None):
    rank, world_size = readers if readers is not None else (None, None)
    return wds_pipe(urls, seed=seed, shuffle_buffer=buffer, decode=False, backend="local", rank=rank, world_size=world_size)


def round_trip(state: Any) -> Any:
    return pickle.loads(pickle.dumps(state))


class Reader:
    """One reader of a stage: a plain pipe (its rank given by hand) or a ``StatefulDataLoader`` over it
    (``num_workers=0``, one reader: the loader would undo a hand sharding); ``epoch``: what it delivers next."""

    def __init__(self, urls, buffer, kind: str, readers: Tuple[int, int], epoch: int,
                 own: Optional[Any] = None, merged: Optional[Dict[str, Any]] = None) -> None:
        self.kind, self.epoch = kind, epoch
        self.pipe = new_pipe(urls, buffer, readers=readers if kind == "pipe" else None)
        if merged is not None:
            self.pipe.load_state_dict(merged)
        if kind == "loader":
            self.loader = StatefulDataLoader(self.pipe, batch_size=None, num_workers=0)
            if own is not None:
                self.loader.load_state_dict(own)
        elif own is not None:
            self.pipe.load_state_dict(own)
        self.iterator = None

    @property
    def source(self):
        return self.loader if self.kind == "loader" else self.pipe

    def take(self, steps: int, delivered: Dict[int, List[str]]) -> None:
        """At most ``steps`` samples of the epoch under way; stops at its end (starts no other epoch)."""
        self.iterator = iter(self.source)
        for _ in range(steps):
            sample = next(self.iterator, None)
            if sample is None:
                break
            delivered[self.epoch].append(sample["__key__"])

    def finish(self, delivered: Dict[int, List[str]]) -> None:
        """The rest of the epoch under way, and epoch 2 whole if that was epoch 1."""
        for epoch in range(self.epoch, 3):
            for sample in self.source:
                delivered[epoch].append(sample["__key__"])

    def state(self) -> Any:
        return round_trip(self.source.state_dict())


def next_epoch_of(state: Any) -> int:
    """The epoch a reader resumed from ``state`` delivers first."""
    (reader,) = dataset_states(state)
    return reader["epoch"]


stage = st.fixed_dictionaries({
    "readers": st.integers(1, 3),
    "loader": st.booleans(),  # for one reader: StatefulDataLoader or the plain pipe
    "steps": st.lists(st.integers(0, 14), min_size=3, max_size=3),
    "merge": st.booleans(),  # into the next stage: merge_states, or (same layout) each reader its own state
})


@pytest.mark.filterwarnings("ignore:only .* shards for .* readers")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(0, 12), min_size=1, max_size=5), buffer=st.integers(1, 10),
       stages=st.lists(stage, min_size=2, max_size=3))
def test_random_checkpoints_and_merges_deliver_every_sample_exactly_once(sizes, buffer, stages):
    with tempfile.TemporaryDirectory() as folder:
        urls, keys = write_shards(folder, sizes)
        delivered: Dict[int, List[str]] = collections.defaultdict(list)
        states: List[Any] = []
        previous: Optional[Dict[str, Any]] = None
        for number, plan in enumerate(stages):
            final = number == len(stages) - 1
            count = plan["readers"]
            kind = "loader" if count == 1 and plan["loader"] else "pipe"
            own_states = previous is not None and not previous["merge"] and previous["readers"] == count
            if own_states and previous["kind"] != kind:
                kind = previous["kind"]  # a reader's own state goes back into the same kind of reader
            merged = merge_states(states) if previous is not None and not own_states else None
            if merged is not None:
                merged = round_trip(merged)
            readers = []
            for index in range(count):
                if previous is None:
                    epoch, own = 1, None
                elif own_states:
                    own = states[index]
                    epoch = next_epoch_of(own)
                else:
                    epoch, own = merged["epoch"], None
                readers.append(Reader(urls, buffer, kind, (index, count), epoch, own=own, merged=merged))
            job_epoch = min(reader.epoch for reader in readers)
            for reader, steps in zip(readers, plan["steps"]):
                if final:
                    reader.finish(delivered)
                else:  # like a loader's exhausted worker, a reader done with the job's epoch waits for the others
                    reader.take(steps if reader.epoch == job_epoch else 0, delivered)
            states = [reader.state() for reader in readers]
            previous = dict(plan, kind=kind)
        for epoch in (1, 2):
            counts = collections.Counter(delivered[epoch])
            assert sorted(key for key, seen in counts.items() if seen > 1) == [], f"epoch {epoch}: delivered twice"
            assert sorted(counts) == sorted(keys), f"epoch {epoch}: samples missing"


# ------------------------------------------------------------------------------------------------- refusals


@pytest.fixture
def shards(tmp_path):
    return write_shards(str(tmp_path), [5, 0, 7, 3])


def mid_epoch_state(urls: List[str], seed: int = 0, steps: int = 6) -> Dict[str, Any]:
    pipe = new_pipe(urls, 4, seed)
    iterator = iter(pipe)
    for _ in range(steps):
        next(iterator)
    return pipe.state_dict()


def test_a_state_of_other_shards_is_refused_saying_so(shards, tmp_path):
    urls, _ = shards
    more, _ = write_shards(str(tmp_path), [2], prefix="more")
    state = mid_epoch_state(urls)
    pipe = new_pipe(urls + more, 4)
    with pytest.raises(CheckpointMismatch, match=r"taken over 4 shards .*this pipe lists 5"):
        pipe.load_state_dict(state)
        list(pipe)
    other, _ = write_shards(str(tmp_path), [5, 0, 7, 3], prefix="other")  # as many shards, other URLs
    with pytest.raises(CheckpointMismatch, match=r"other shards"):
        pipe = new_pipe(other, 4)
        pipe.load_state_dict(state)
        list(pipe)


def test_a_state_of_another_seed_is_refused_saying_so(shards):
    urls, _ = shards
    state = mid_epoch_state(urls, seed=0)
    with pytest.raises(CheckpointMismatch, match=r"seed=0.*seed=1"):
        new_pipe(urls, 4, seed=1).load_state_dict(state)
    loader = StatefulDataLoader(new_pipe(urls, 4, seed=1), batch_size=None, num_workers=0)
    first = StatefulDataLoader(new_pipe(urls, 4, seed=0), batch_size=None, num_workers=0)
    iterator = iter(first)
    next(iterator)
    with pytest.raises(CheckpointMismatch, match=r"seed"):
        loader.load_state_dict(first.state_dict())
        list(loader)


def test_a_state_of_other_shards_is_refused_through_a_loader_with_a_worker(shards):
    """Raised in the worker, the refusal reaches the main process as a CheckpointMismatch. (One worker, one
    case: torch's loader then takes 5 s to shut a worker that raised down.)"""
    urls, _ = shards
    loader = StatefulDataLoader(new_pipe(urls, 4), batch_size=None, num_workers=1, multiprocessing_context="fork")
    iterator = iter(loader)
    for _ in range(4):
        next(iterator)
    state = loader.state_dict()
    del iterator, loader
    other = StatefulDataLoader(new_pipe(urls[:3], 4), batch_size=None, num_workers=1, multiprocessing_context="fork",
                               timeout=60)
    other.load_state_dict(state)
    with pytest.raises(CheckpointMismatch, match=r"taken over 4 shards .*this pipe lists 3"):
        list(other)


def test_a_state_of_another_format_version_is_refused_saying_so(shards):
    urls, _ = shards
    state = dict(mid_epoch_state(urls), version=99)
    with pytest.raises(CheckpointMismatch, match=r"version 99 .*reads version 3"):
        new_pipe(urls, 4).load_state_dict(state)
    with pytest.raises(CheckpointMismatch, match=r"version 99"):
        merge_states([state])


def test_a_merged_state_loaded_into_a_pipe_over_other_shards_is_refused(shards, tmp_path):
    urls, _ = shards
    states = []
    for index in range(2):
        pipe = new_pipe(urls, 4, readers=(index, 2))
        iterator = iter(pipe)
        next(iterator)
        states.append(pipe.state_dict())
    merged = merge_states(states)
    fewer = new_pipe(urls[:3], 4)
    with pytest.raises(CheckpointMismatch, match=r"shards"):
        fewer.load_state_dict(merged)
        list(fewer)


def test_merge_states_needs_every_reader_once(shards):
    urls, _ = shards
    states = []
    for index in range(3):
        pipe = new_pipe(urls, 4, readers=(index, 3))
        iterator = iter(pipe)
        next(iterator, None)
        states.append(pipe.state_dict())
    with pytest.raises(CheckpointMismatch, match=r"every reader"):
        merge_states(states[:2])
    with pytest.raises(CheckpointMismatch, match=r"every reader"):
        merge_states([states[0], states[1], states[1]])
    with pytest.raises(ValueError, match=r"merge"):  # three readers' states into one pipe, unmerged
        new_pipe(urls, 4).load_state_dict({"_snapshot": {"_worker_snapshots": {
            f"worker_{index}": {"dataset_state": state} for index, state in enumerate(states)}}, "_steps_since_snapshot": 0})


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_merged_state_taken_right_after_an_epoch_resumes_into_the_next_epoch(shards, num_workers):
    """The whole epoch delivered, then the checkpoint (the end of a training epoch): merged and loaded into a
    fresh loader, the first epoch of the new job is epoch 2, whole, as when the loader resumes its own state
    (``test_checkpoint_loaders``: w2-fork-right-after-the-epoch), not an empty rest of epoch 1."""
    urls, keys = shards
    context = "fork" if num_workers else None
    loader = StatefulDataLoader(new_pipe(urls, 4), batch_size=None, num_workers=num_workers, multiprocessing_context=context)
    assert sorted(sample["__key__"] for sample in loader) == sorted(keys)
    merged = merge_states([loader.state_dict()])
    pipe = new_pipe(urls, 4)
    pipe.load_state_dict(merged)
    resumed = StatefulDataLoader(pipe, batch_size=None, num_workers=2, multiprocessing_context="fork")
    first_epoch = [sample["__key__"] for sample in resumed]
    assert sorted(first_epoch) == sorted(keys), (
        f"the new job's first epoch delivered {len(first_epoch)} of {len(keys)} samples (merged state: {merged})")


# ---------------------------------------------------------------------------------------- size, persistence


def test_a_state_with_a_1000_sample_buffer_is_kilobytes_and_holds_no_sample_bytes(tmp_path):
    urls, keys = write_shards(str(tmp_path), [300] * 10, payload=200)
    pipe = new_pipe(urls, 1000)
    loader = StatefulDataLoader(pipe, batch_size=None, num_workers=0)
    iterator = iter(loader)
    delivered = [next(iterator)["__key__"] for _ in range(1500)]
    state = loader.state_dict()
    pickled = pickle.dumps(state)
    (reader,) = dataset_states(state)
    assert len(stage_states(chain_nested(reader["stages"]))["shuffle"]["buffer"]) == 1000 * 4 * 8  # four numbers a sample
    print(f"\nstate of a 1000-sample buffer over 3000 samples, pickled: {len(pickled)} bytes")
    assert len(pickled) < 64 * 1024, len(pickled)
    assert b"PAYLOAD" not in pickled
    resumed = StatefulDataLoader(new_pipe(urls, 1000), batch_size=None, num_workers=0)
    resumed.load_state_dict(pickle.loads(pickled))
    rest = [sample["__key__"] for sample in resumed]
    assert sorted(delivered + rest) == sorted(keys) and len(delivered + rest) == len(keys)


def test_a_loader_state_survives_torch_save_and_load(shards):
    urls, keys = shards
    loader = StatefulDataLoader(new_pipe(urls, 4), batch_size=None, num_workers=0)
    iterator = iter(loader)
    delivered = [next(iterator)["__key__"] for _ in range(7)]
    saved = io.BytesIO()
    torch.save(loader.state_dict(), saved)
    saved.seek(0)
    state = torch.load(saved, weights_only=False)
    assert state == round_trip(loader.state_dict())
    resumed = StatefulDataLoader(new_pipe(urls, 4), batch_size=None, num_workers=0)
    resumed.load_state_dict(state)
    rest = [sample["__key__"] for sample in resumed]
    assert len(delivered + rest) == len(keys) and sorted(delivered + rest) == sorted(keys)
    reference = StatefulDataLoader(new_pipe(urls, 4), batch_size=None, num_workers=0)
    epochs = [[sample["__key__"] for sample in reference] for _ in range(2)]
    assert delivered + rest == epochs[0]
    assert [sample["__key__"] for sample in resumed] == epochs[1]


def test_a_pipe_that_cannot_be_checkpointed_runs_under_a_stateful_loader_and_says_why_when_loaded():
    from torch.utils.data.datapipes.iter import IterableWrapper

    def numbers():
        return IterableWrapper(range(20)).shard_across_readers().shuffle_samples(buffer_size=4, seed=0)

    loader = StatefulDataLoader(numbers(), batch_size=None, num_workers=0)
    samples = iter(loader)
    taken = [next(samples) for _ in range(5)]  # the loader takes a state at every step: no error
    state = loader.state_dict()
    assert sorted(taken + list(samples)) == list(range(20))
    with pytest.raises(CheckpointMismatch, match="cannot be checkpointed.*do not say where they lie"):
        numbers().load_state_dict(state)
