"""Mixing datasets by weight (``wds_pipe({...}, weights=...)``) and epochs of a fixed length
(``samples_per_epoch``): the proportions, each stop rule's epochs, exactly once per reader and pass, labels,
errors per source, and what is refused."""
import collections
import io
import math
import os
from typing import Dict, List

import pytest
from hypothesis import given, settings, strategies as st
from torch.utils.data import DataLoader

from torchdata_s3ext import CheckpointMismatch, merge_states, wds_pipe
from torchdata_s3ext.epochs.mixing import Mix, Passes
from torchdata_s3ext.epochs.shuffling import buffered_positions
from torchdata_s3ext.stage import IterableStage
from torchdata_s3ext.testing import write_tar

#: source -> samples per shard
SOURCES = {"web": [5, 4, 6], "books": [3, 2], "code": [4]}


def _write(folder, name: str, sizes: List[int]) -> List[str]:
    os.makedirs(folder / name, exist_ok=True)
    urls = []
    for shard, count in enumerate(sizes):
        urls.append(str(folder / name / f"shard-{shard:06d}.tar"))
        with open(urls[-1], "wb") as out:
            write_tar(out, [(f"{name}{shard}_{index}", {"cls": b"1", "txt": name.encode()}) for index in range(count)])
    return urls


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Dict[str, List[str]]:
    folder = tmp_path_factory.mktemp("mix")
    return {name: _write(folder, name, sizes) for name, sizes in SOURCES.items()}


def _keys(name: str) -> List[str]:
    return [f"{name}{shard}_{index}" for shard, count in enumerate(SOURCES[name]) for index in range(count)]


def _pipe(sources, **options):
    return wds_pipe(sources, backend="local", decode=False, seed=options.pop("seed", 0), shuffle_buffer=3, **options)


def _read(pipe) -> List[tuple]:
    return [(sample["__source__"], sample["__key__"]) for sample in pipe]


# --- proportions ------------------------------------------------------------------------------------------


class Numbers(IterableStage):
    """A source of many small dict samples (the mix reads any stage)."""

    def __init__(self, name: str, count: int) -> None:
        super().__init__([{"__key__": f"{name}{index}"} for index in range(count)])


@settings(max_examples=25, deadline=None)
@given(weights=st.lists(st.floats(0.05, 50.0), min_size=2, max_size=4), seed=st.integers(0, 2**32))
def test_each_source_is_drawn_in_its_weights_proportion_within_binomial_bounds(weights, seed):
    draws = 3000
    names = [f"s{number}" for number in range(len(weights))]
    passes = {name: Passes() for name in names}
    clock = Passes()
    clock.epoch = 1
    mix = Mix({name: Numbers(name, draws) for name in names}, passes, dict(zip(names, weights)), "all_exhausted",
              seed, clock)  # type: ignore[arg-type]
    mix.reset()
    counts = collections.Counter(next(mix)["__source__"] for _ in range(draws))
    for name, weight in zip(names, weights):
        share = weight / sum(weights)
        spread = math.sqrt(draws * share * (1 - share))
        assert abs(counts[name] - draws * share) <= 5 * spread + 1, (name, share, counts)


# --- stop rules --------------------------------------------------------------------------------------------


def test_all_exhausted_gives_every_sample_of_every_source_once_labelled(sources):
    samples = _read(_pipe(sources, stop="all_exhausted"))
    assert sorted(samples) == sorted((name, key) for name in SOURCES for key in _keys(name))


def test_first_exhausted_ends_when_the_first_source_runs_out(sources):
    samples = _read(_pipe(sources, weights={"web": 1, "books": 1, "code": 1}))
    by_source = collections.defaultdict(list)
    for name, key in samples:
        by_source[name].append(key)
    ran_out = [name for name in SOURCES if sorted(by_source[name]) == sorted(_keys(name))]
    assert len(ran_out) == 1  # the epoch ended when that source was next drawn, the others not through
    assert all(len(keys) == len(set(keys)) and set(keys) <= set(_keys(name)) for name, keys in by_source.items())


def test_cycle_until_all_exhausted_starts_spent_sources_again_in_a_new_order(sources):
    samples = _read(_pipe(sources, weights={"web": 1, "books": 8, "code": 1}, stop="cycle_until_all_exhausted"))
    counts = collections.Counter(samples)
    books = [key for name, key in samples if name == "books"]
    assert {name for name, _ in counts} == set(SOURCES)
    assert all(set(_keys(name)) <= {key for source, key in counts if source == name} for name in SOURCES)
    size = len(_keys("books"))
    passes = [books[start:start + size] for start in range(0, len(books), size)]
    assert len(passes) >= 2 and passes[0] != passes[1]
    assert all(sorted(one) == sorted(_keys("books")) for one in passes[:-1])  # every pass whole, each key once


def test_orders_depend_on_the_seed_and_change_each_epoch(sources):
    pipe = _pipe(sources, stop="all_exhausted")
    first, second = _read(pipe), _read(pipe)
    assert first != second and sorted(first) == sorted(second)
    assert _read(_pipe(sources, stop="all_exhausted")) == first
    assert _read(_pipe(sources, stop="all_exhausted", seed=1)) != first


def test_weights_default_to_equal_and_to_sample_counts_with_shard_indexes(sources, tmp_path):
    from torchdata_s3ext import ShardWriter

    indexed = {}
    for name, count in (("big", 90), ("small", 10)):
        with ShardWriter(str(tmp_path / name / "shard-%06d.tar"), max_samples=50) as writer:
            for index in range(count):
                writer.write({"__key__": f"{name}{index}", "cls": b"1"})
        indexed[name] = str(tmp_path / name / "index.json")
    assert _pipe(indexed).settings.weights == {"big": 90.0, "small": 10.0}
    assert _pipe(sources).settings.weights == {"web": 1.0, "books": 1.0, "code": 1.0}
    assert len(_pipe(indexed, stop="all_exhausted")) == 100


# --- samples_per_epoch ------------------------------------------------------------------------------------


def test_samples_per_epoch_without_a_mix_goes_on_where_the_last_epoch_stopped(sources):
    pipe = _pipe(sources["web"], samples_per_epoch=6)
    epochs = [[sample["__key__"] for sample in pipe] for _ in range(3)]
    assert [len(epoch) for epoch in epochs] == [6, 6, 6] and len(pipe) == 6
    stream = [key for epoch in epochs for key in epoch]
    assert sorted(stream[:15]) == sorted(_keys("web")), "a sample came twice before every sample came once"
    assert "__source__" not in next(iter(pipe))


@pytest.mark.parametrize("workers", [0, 2])
def test_samples_per_epoch_with_a_mix_over_dataloader_workers_made_anew_each_epoch(sources, workers):
    pipe = _pipe(sources, samples_per_epoch=11)
    loader = DataLoader(pipe, batch_size=None, num_workers=workers, multiprocessing_context="fork" if workers else None)
    epochs = [_read(loader) for _ in range(3)]
    assert [len(epoch) for epoch in epochs] == [11, 11, 11]
    assert {name for epoch in epochs for name, _ in epoch} == set(SOURCES) and epochs[0] != epochs[1]
    if workers == 0:  # one reader: in each source, no sample twice before all of that source came once
        stream = [sample for epoch in epochs for sample in epoch]
        for name in SOURCES:
            keys = [key for source, key in stream if source == name]
            size = len(_keys(name))
            assert all(sorted(keys[start:start + size]) == sorted(_keys(name))
                       for start in range(0, len(keys) - size + 1, size)), name


def test_samples_per_epoch_splits_over_ranks_then_workers(sources):
    ranks = [_pipe(sources["web"], samples_per_epoch=7, rank=rank, world_size=2) for rank in range(2)]
    assert [len(pipe) for pipe in ranks] == [4, 3]
    assert [len(list(pipe)) for pipe in ranks] == [4, 3]


# --- errors -----------------------------------------------------------------------------------------------


def test_a_damaged_shard_in_one_source_is_skipped_and_counted_for_that_source_only(sources, tmp_path):
    data = io.BytesIO()
    write_tar(data, [(f"bad_{index}", {"cls": b"1", "txt": b"x" * 600}) for index in range(3)])
    (tmp_path / "shard-000000.tar").write_bytes(data.getvalue()[:3884])  # inside bad_1.txt
    mixed = dict(sources, bad=[str(tmp_path / "shard-000000.tar")])
    pipe = _pipe(mixed, stop="all_exhausted", on_error="skip")
    samples = _read(pipe)
    assert sorted(key for name, key in samples if name != "bad") == sorted(key for name in SOURCES for key in _keys(name))
    assert [key for name, key in samples if name == "bad"] == ["bad_0"]
    assert pipe.error_counts.bad_shards == 1 and pipe.source_error_counts["bad"].bad_shards == 1
    assert pipe.source_error_counts["web"].total() == 0


@pytest.mark.parametrize("weights, message", [
    ({"web": 0, "books": 1, "code": 1}, "the weight of source 'web' must be a positive, finite number, got 0"),
    ({"web": 1, "books": 1}, r"missing \['code'\]"),
    ({"web": 1, "books": 1, "code": 1, "news": 2}, r"unknown \['news'\]"),
    ({"web": -1.0, "books": 1, "code": 1}, "got -1.0"),
])
def test_a_bad_weight_or_name_is_a_clear_value_error(sources, weights, message):
    with pytest.raises(ValueError, match=message):
        _pipe(sources, weights=weights)


def test_mixing_options_without_named_sources_or_together_are_refused(sources):
    with pytest.raises(ValueError, match="weights= and stop= mix named datasets: pass shards as a dict"):
        _pipe(sources["web"], stop="all_exhausted")
    with pytest.raises(ValueError, match="stop= and samples_per_epoch= do not go together"):
        _pipe(sources, stop="all_exhausted", samples_per_epoch=5)
    with pytest.raises(ValueError, match="stop must be one of 'first_exhausted', 'all_exhausted'"):
        _pipe(sources, stop="never")
    with pytest.raises(ValueError, match="samples_per_epoch must be a positive int or None, got 0"):
        _pipe(sources, samples_per_epoch=0)


def test_len_of_a_mix_is_known_only_where_the_rule_fixes_it(sources):
    with pytest.raises(TypeError, match="a mix with stop='first_exhausted' ends when its draws say so"):
        len(_pipe(sources))


def test_a_resume_with_the_same_layout_goes_on_and_another_mix_is_refused(sources):
    pipe = _pipe(sources, stop="all_exhausted")
    reference = _read(pipe)
    pipe = _pipe(sources, stop="all_exhausted")
    samples = iter(pipe)
    head = [(sample["__source__"], sample["__key__"]) for _, sample in zip(range(7), samples)]
    state = pipe.state_dict()
    resumed = _pipe(sources, stop="all_exhausted")
    resumed.load_state_dict(state)
    assert head + _read(resumed) == reference
    other = _pipe({"web": sources["web"], "books": sources["books"]}, stop="all_exhausted")
    other.load_state_dict(state)
    with pytest.raises(CheckpointMismatch, match="the checkpoint mixes sources"):
        list(other)


def test_shards_of_a_source_must_be_named_and_a_dict_not_empty(sources):
    with pytest.raises(ValueError, match="shards is an empty dict"):
        _pipe({})
    with pytest.raises(ValueError, match="non-empty strings"):
        _pipe({"": sources["web"]})


def _plain(state):
    """``state`` with each shuffle buffer as its positions (the table numbering its shards may differ)."""
    if isinstance(state, dict):
        if state.get("stage") == "shuffle" and "buffer" in state:
            state = dict(state, buffer=buffered_positions(state), urls=None)
        return {key: _plain(value) for key, value in state.items()}
    return state


@pytest.mark.parametrize("mixed", [False, True])
def test_a_chain_reset_from_a_state_gives_that_state_back_before_it_reads(sources, mixed):
    pipe = _pipe(sources if mixed else sources["web"], **({"stop": "all_exhausted"} if mixed else {}))
    samples = iter(pipe)
    for step in range(20):
        if next(samples, None) is None:
            break
        state = pipe._chain.state()
        chain = pipe._stage(pipe._clock)
        chain.reset(state)
        assert _plain(chain.state()) == _plain(state), f"after {step + 1} samples"
        chain.close()


@pytest.mark.parametrize("taken", [(0, 0), (4, 9), (10, 2), (40, 40)])
def test_an_elastic_resume_of_a_mix_gives_every_sample_not_yet_delivered_once(sources, taken):
    delivered, states = [], []
    for rank, count in enumerate(taken):
        pipe = _pipe(sources, stop="all_exhausted", rank=rank, world_size=2)
        samples = iter(pipe)
        delivered += [(sample["__source__"], sample["__key__"]) for _, sample in zip(range(count), samples)]
        states.append(pipe.state_dict())
    merged = merge_states(states)
    for rank in range(3):
        pipe = _pipe(sources, stop="all_exhausted", rank=rank, world_size=3)
        pipe.load_state_dict(merged)
        delivered += _read(pipe)
    every = sorted((name, key) for name in SOURCES for key in _keys(name))
    if taken == (40, 40):  # both readers had ended the epoch: the merged state begins the next one, whole
        assert sorted(delivered) == sorted(every * 2)
    else:
        assert sorted(delivered) == every


def test_a_merged_state_of_fixed_length_epochs_or_of_other_datasets_is_refused(sources):
    pipe = _pipe(sources["web"], samples_per_epoch=4)
    next(iter(pipe))
    with pytest.raises(CheckpointMismatch, match="does not merge the states of a pipe with samples_per_epoch"):
        merge_states([pipe.state_dict()])
    mix = _pipe(sources, stop="all_exhausted")
    next(iter(mix))
    merged = merge_states([mix.state_dict()])
    with pytest.raises(CheckpointMismatch, match="the checkpoint mixes datasets"):
        _pipe({"web": sources["web"]}, stop="all_exhausted").load_state_dict(merged)
    with pytest.raises(CheckpointMismatch, match="this state is a mix's, merged"):
        _pipe(sources["web"]).load_state_dict(merged)
