"""Mixes and ``samples_per_epoch`` across real crashes: a job (``checkpoint_job.py``) takes some samples under
``StatefulDataLoader``, saves its state and SIGKILLs itself and its workers; the next process loads the state and
goes on. Over all its runs the interrupted epoch is the uninterrupted run's, sample for sample, and so is the
epoch after it (for ``samples_per_epoch``: going on where the interrupted one stopped)."""
import collections
import concurrent.futures
import os
import random
import signal
from typing import Any, Dict, List

import pytest

from test_checkpoint_loaders import _read_keys, _run_job, _write_shard  # noqa: I001  (tests/e2e is on sys.path)

#: two sources (the first three shards, the last three): 13 and 15 samples, an empty shard among them
SHARD_SIZES = [6, 0, 7, 5, 4, 6]
#: the steps are drawn once, from this seed, so that a failure can be run again
STEPS = random.Random(20261206)

SCENARIOS: Dict[str, Dict[str, Any]] = {
    "mix-first-exhausted-w0-twice": dict(config=dict(pipe="mix", num_workers=0), steps=[STEPS.randint(1, 8), 3]),
    "mix-all-exhausted-w2-fork": dict(config=dict(pipe="mix", stop="all_exhausted", num_workers=2, context="fork"),
                                      steps=[STEPS.randint(1, 20)]),
    "mix-cycle-w2-spawn": dict(config=dict(pipe="mix", stop="cycle_until_all_exhausted", num_workers=2, context="spawn"),
                               steps=[STEPS.randint(1, 20)]),
    "window-w2-fork-twice": dict(config=dict(pipe="window", per_epoch=10, num_workers=2, context="fork"),
                                 steps=[STEPS.randint(1, 9), 1]),
    "window-w2-right-after-the-epoch": dict(config=dict(pipe="window", per_epoch=10, num_workers=2, context="fork"),
                                            steps=["epoch"]),
    "mix-window-w0": dict(config=dict(pipe="mix_window", per_epoch=9, num_workers=0), steps=[STEPS.randint(1, 8)]),
}


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> List[str]:
    folder = tmp_path_factory.mktemp("mix-shards")
    urls = []
    for shard, count in enumerate(SHARD_SIZES):
        urls.append(str(folder / f"shard-{shard:06d}.tar"))
        _write_shard(urls[-1], [f"s{shard}_{index:02d}" for index in range(count)])
    return urls


def _spec(config: Dict[str, Any], shards: List[str], **more: Any) -> Dict[str, Any]:
    return dict(config, shards=shards, seed=0, buffer=3, **more)


def _run_scenario(name: str, scenario: Dict[str, Any], shards: List[str], workdir: str) -> List[Dict[str, Any]]:
    legs = [dict(steps=steps, state_out=os.path.join(workdir, f"{name}.{number}.pt"))
            for number, steps in enumerate(scenario["steps"])] + [dict(steps=None, epochs_after=1)]
    outcome = []
    for number, leg in enumerate(legs):
        keys_out = os.path.join(workdir, f"{name}.{number}.keys")
        resume = legs[number - 1]["state_out"] if number else None
        done = _run_job(_spec(scenario["config"], shards, keys_out=keys_out, resume=resume, **leg), workdir, f"{name}.{number}")
        outcome.append({"returncode": done.returncode, "stderr": done.stderr[-3000:], "steps": leg["steps"],
                        "keys": _read_keys(keys_out)})
        if done.returncode != (0 if leg["steps"] is None else -signal.SIGKILL):
            break
    return outcome


@pytest.fixture(scope="module")
def outcomes(shards, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("mix-jobs"))
    legs = [_spec(dict(scenario["config"], context="fork") if scenario["config"].get("context") else scenario["config"],
                  shards, steps=None, epochs_after=2, keys_out=os.path.join(workdir, f"{name}.ref"))
            for name, scenario in SCENARIOS.items()]
    done = _run_job({"legs": legs}, workdir, "references")
    assert done.returncode == 0, done.stderr[-3000:]
    references = {name: _read_keys(os.path.join(workdir, f"{name}.ref")) for name in SCENARIOS}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(_run_scenario, name, scenario, shards, workdir) for name, scenario in SCENARIOS.items()}
        return references, {name: future.result() for name, future in futures.items()}


def _source_keys(source: str) -> List[str]:
    numbers = range(3) if source == "a" else range(3, 6)
    return sorted(f"s{shard}_{index:02d}" for shard in numbers for index in range(SHARD_SIZES[shard]))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_killed_mix_resumed_goes_on_as_the_uninterrupted_run(outcomes, name):
    references, results = outcomes
    reference, legs = references[name], results[name]
    for number, leg in enumerate(legs):
        assert leg["returncode"] == (0 if leg["steps"] is None else -signal.SIGKILL), f"leg {number}:\n{leg['stderr']}"
    assert len(legs) == len(SCENARIOS[name]["steps"]) + 1
    assert reference[0] != reference[1]
    if SCENARIOS[name]["steps"] == ["epoch"]:
        assert legs[0]["keys"][0] == reference[0]
        assert legs[1]["keys"][0] == reference[1] and legs[1]["keys"][1] == reference[2]
        return
    delivered = [key for leg in legs for key in leg["keys"][0]]
    for leg in legs[:-1]:
        assert len(leg["keys"][0]) == leg["steps"]
    assert delivered == reference[0], "the resumed epoch is not the uninterrupted run's"
    assert legs[-1]["keys"][1] == reference[1], "the next epoch differs from the uninterrupted run's"


def test_the_uninterrupted_runs_keep_each_rule(outcomes):
    references, _ = outcomes
    every_a, every_b = _source_keys("a"), _source_keys("b")
    for epoch in range(3):
        counts = collections.Counter(references["mix-all-exhausted-w2-fork"][epoch])
        assert sorted(counts) == sorted(every_a + every_b) and set(counts.values()) == {1}
        first = references["mix-first-exhausted-w0-twice"][epoch]
        assert len(first) == len(set(first)) and (set(every_a) <= set(first) or set(every_b) <= set(first))
        cycled = collections.Counter(references["mix-cycle-w2-spawn"][epoch])
        assert set(every_a + every_b) <= set(cycled)
    window = references["window-w2-fork-twice"]
    assert [len(window[epoch]) for epoch in range(3)] == [10, 10, 10]
    assert len(set(window[0])) == 10  # each worker is in its first pass
    assert [len(references["mix-window-w0"][epoch]) for epoch in range(3)] == [9, 9, 9]


@pytest.mark.parametrize("pipe", ["mix", "mix_window"])
def test_two_gloo_ranks_resumed_from_their_own_states_go_on_as_the_uninterrupted_run(shards, tmp_path, pipe):
    from test_checkpoint_ranks import WORLD_SIZE, _keys, _launch

    at = lambda name: str(tmp_path / name)  # noqa: E731
    base = dict(pipe=pipe, shards=shards, seed=0, buffer=3, context="fork", num_workers=1, kill=False, per_epoch=12,
                stop="all_exhausted")
    first = _launch({"legs": [
        dict(base, steps=None, epochs_after=1, keys_out=at("ref.{rank}.keys")),
        dict(base, steps=2, keys_out=at("first.{rank}.keys"), state_out=at("first.{rank}.pt")),
    ]}, str(tmp_path), "first", WORLD_SIZE)
    assert [done.returncode for done in first] == [0] * WORLD_SIZE, [done.stderr[-2000:] for done in first]
    last = _launch(dict(base, steps=None, resume=at("first.{rank}.pt"), keys_out=at("last.{rank}.keys")),
                   str(tmp_path), "last", WORLD_SIZE)
    assert [done.returncode for done in last] == [0] * WORLD_SIZE, [done.stderr[-2000:] for done in last]
    every = []
    for rank in range(WORLD_SIZE):
        reference, head, rest = _keys(at(f"ref.{rank}.keys")), _keys(at(f"first.{rank}.keys")), _keys(at(f"last.{rank}.keys"))
        assert head[0] + rest[0] == reference[0] and rest[1] == reference[1], f"rank {rank}"
        every += reference[0]
    if pipe == "mix":  # all_exhausted: every sample of both sources once over the ranks
        assert sorted(every) == sorted(_source_keys("a") + _source_keys("b"))
    else:
        assert len(every) == 12 and len(set(every)) == 12


def test_a_mix_resumed_on_another_number_of_workers_delivers_every_sample_not_yet_delivered_once(shards, tmp_path):
    import torch

    from torchdata_s3ext import merge_states

    base = dict(pipe="mix", stop="all_exhausted", shards=shards, seed=0, buffer=3, context="fork")
    first = _run_job(dict(base, num_workers=2, steps=7, keys_out=str(tmp_path / "first.keys"),
                          state_out=str(tmp_path / "first.pt")), str(tmp_path), "first")
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    torch.save(merge_states([torch.load(tmp_path / "first.pt", weights_only=False)]), tmp_path / "merged.pt")
    last = _run_job(dict(base, num_workers=3, steps=None, epochs_after=0, merged=str(tmp_path / "merged.pt"),
                         keys_out=str(tmp_path / "last.keys")), str(tmp_path), "last")
    assert last.returncode == 0, last.stderr[-3000:]
    delivered = _read_keys(str(tmp_path / "first.keys"))[0] + _read_keys(str(tmp_path / "last.keys"))[0]
    assert len(_read_keys(str(tmp_path / "first.keys"))[0]) == 7
    assert sorted(delivered) == sorted(_source_keys("a") + _source_keys("b"))
