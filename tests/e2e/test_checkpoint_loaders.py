"""Checkpoints under ``StatefulDataLoader`` across real crashes: a job (``checkpoint_job.py``, a process of its
own) takes some samples, saves ``loader.state_dict()`` and SIGKILLs itself and its workers; the next process
loads the state and goes on. Over all its runs the interrupted epoch delivers every sample exactly once, in
the order of an uninterrupted run, and the epoch after it is the uninterrupted run's second epoch.

Covered: 0, 1 and 2 workers, fork and spawn, one and two resumptions, checkpoints before the first sample,
mid-shard, exactly between two shards, at the epoch's last sample and right after the epoch ended, uneven
shards with an empty one, ``on_error="skip"`` over a damaged shard, the hand-written chain, ``batch_size=4``.
And the bytes a resumption fetches again (boto3 on the local S3 server): what is left of the shard, not all.
"""
import collections
import concurrent.futures
import gc
import io
import itertools
import json
import os
import signal
import subprocess
import sys
from typing import Any, Dict, List

import pytest

from torchdata_s3ext.testing import write_tar

JOB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoint_job.py")
LEG_TIMEOUT_S = 120

#: uneven shards and an empty one (a tar with no members): 25 samples
SHARD_SIZES = [6, 3, 0, 7, 5, 4]


def _sample(key: str, size: int = 300) -> Any:
    return key, {"cls": str(len(key)).encode(), "txt": (key.encode() + b".") * (size // (len(key) + 1))}


def _write_shard(path: str, keys: List[str]) -> None:
    with open(path, "wb") as shard:
        write_tar(shard, [_sample(key) for key in keys])


@pytest.fixture(scope="module")
def shard_sets(tmp_path_factory) -> Dict[str, List[str]]:
    """``plain``: the uneven shards; ``damaged``: the same and a shard cut in the middle of a member."""
    folder = tmp_path_factory.mktemp("shards")
    urls = []
    for shard, count in enumerate(SHARD_SIZES):
        urls.append(str(folder / f"shard-{shard:06d}.tar"))
        _write_shard(urls[-1], [f"s{shard}_{index:02d}" for index in range(count)])
    buffer = io.BytesIO()
    write_tar(buffer, [_sample(f"d_{index:02d}") for index in range(6)])  # type: ignore[arg-type]
    data = buffer.getvalue()
    cut = 3 * 2048 + 1024 + 512 + 150  # 3 samples of 2 members (a header and a block each), then 150 bytes into a txt
    damaged = folder / "damaged" / "shard-000099.tar"
    damaged.parent.mkdir()
    damaged.write_bytes(data[:cut])
    return {"plain": urls, "damaged": urls + [str(damaged)]}


def _run_job(spec: Dict[str, Any], workdir: str, name: str) -> subprocess.CompletedProcess:
    spec_path = os.path.join(workdir, f"{name}.json")
    with open(spec_path, "w") as spec_file:
        json.dump(spec, spec_file)
    # A session of its own, so that the job's SIGKILL of its process group takes its workers and nothing else.
    return subprocess.run(
        [sys.executable, JOB, spec_path], capture_output=True, text=True, timeout=LEG_TIMEOUT_S, start_new_session=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def _read_keys(path: str) -> Dict[int, List[str]]:
    tagged: Dict[int, List[str]] = collections.defaultdict(list)
    if os.path.exists(path):
        with open(path) as keys_file:
            for line in keys_file:
                tag, key = line.split()
                tagged[int(tag)].append(key)
    return tagged


#: name -> (the loader and pipe, the steps of each leg but the last; "N" = every sample of the epoch)
SCENARIOS: Dict[str, Dict[str, Any]] = {
    # nw=0, no buffer: mid-shard, then exactly between two shards (steps found from the reference order)
    "w0-mid-shard-then-between-shards": dict(config=dict(num_workers=0, buffer=1), steps=["mid", "between"]),
    "w1-before-first-sample": dict(config=dict(num_workers=1, context="fork", buffer=4), steps=[0]),
    "w2-fork-twice-up-to-the-last-sample": dict(config=dict(num_workers=2, context="fork", buffer=4), steps=[5, "N"]),
    "w2-spawn-batch4": dict(config=dict(num_workers=2, context="spawn", buffer=4, batch_size=4), steps=[2]),
    "w2-fork-right-after-the-epoch": dict(config=dict(num_workers=2, context="fork", buffer=4), steps=["epoch"]),
    "w2-skip-damaged-shard": dict(config=dict(num_workers=2, context="fork", buffer=3, pipe="skip", shards="damaged"),
                                  steps=[9]),
    "w1-chain-batch4": dict(config=dict(num_workers=1, context="fork", buffer=4, batch_size=4, pipe="chain"), steps=[3]),
    "w0-chain-skip-damaged-twice": dict(config=dict(num_workers=0, buffer=5, pipe="chain_skip", shards="damaged"),
                                        steps=[4, 8]),
}


def _spec(config: Dict[str, Any], shard_sets: Dict[str, List[str]], **more: Any) -> Dict[str, Any]:
    spec = {key: value for key, value in config.items() if key != "shards"}
    spec.update(shards=shard_sets[config.get("shards", "plain")], seed=0, **more)
    return spec


def _reference_config(config: Dict[str, Any]) -> Dict[str, Any]:
    # Under spawn the orders are those under fork (seed=int promises it); fork spares seconds of worker starts.
    return {**config, "context": "fork"} if config.get("context") == "spawn" else config


def _batches_in(config: Dict[str, Any], samples: int) -> int:
    batch = config.get("batch_size") or 1
    return -(-samples // batch)


def _run_scenario(name: str, scenario: Dict[str, Any], reference: Dict[int, List[str]], shard_sets, workdir: str):
    config = scenario["config"]
    epoch = reference[0]
    runs = [len(list(group)) for _, group in itertools.groupby(key.split("_")[0] for key in epoch)]
    legs: List[Dict[str, Any]] = []
    taken = 0
    for number, steps in enumerate(scenario["steps"]):
        if steps == "mid":
            steps = 1
            assert runs[0] >= 2
        elif steps == "between":
            steps = runs[0] + runs[1] - taken  # the first two shards of the order, then nothing of the third
        elif steps == "N":
            steps = _batches_in(config, len(epoch)) - taken
        if isinstance(steps, int):
            taken += steps
        legs.append(dict(steps=steps, state_out=os.path.join(workdir, f"{name}.{number}.pt")))
    legs.append(dict(steps=None, epochs_after=1))
    outcome: Dict[str, Any] = {"legs": []}
    for number, leg in enumerate(legs):
        keys_out = os.path.join(workdir, f"{name}.{number}.keys")
        resume = legs[number - 1]["state_out"] if number else None
        spec = _spec(config, shard_sets, keys_out=keys_out, resume=resume, **leg)
        done = _run_job(spec, workdir, f"{name}.{number}")
        outcome["legs"].append({"returncode": done.returncode, "stderr": done.stderr[-3000:], "steps": leg["steps"],
                                "keys": _read_keys(keys_out), "state": leg.get("state_out")})
        if done.returncode != (0 if leg["steps"] is None else -signal.SIGKILL):
            break
    return outcome


@pytest.fixture(scope="module")
def outcomes(shard_sets, tmp_path_factory):
    """The uninterrupted runs (one process for all), then every scenario's legs, two scenarios at a time."""
    workdir = str(tmp_path_factory.mktemp("jobs"))
    references: Dict[str, Dict[int, List[str]]] = {}
    legs = []
    for name, scenario in SCENARIOS.items():
        config = _reference_config(scenario["config"])
        legs.append(_spec(config, shard_sets, steps=None, epochs_after=2, keys_out=os.path.join(workdir, f"{name}.ref")))
    done = _run_job({"legs": legs}, workdir, "references")
    assert done.returncode == 0, done.stderr[-3000:]
    for name in SCENARIOS:
        references[name] = _read_keys(os.path.join(workdir, f"{name}.ref"))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(_run_scenario, name, scenario, references[name], shard_sets, workdir)
                   for name, scenario in SCENARIOS.items()}
        results = {name: future.result() for name, future in futures.items()}
    return references, results


def _all_keys(shard_sets, config) -> List[str]:
    keys = [f"s{shard}_{index:02d}" for shard, count in enumerate(SHARD_SIZES) for index in range(count)]
    if config.get("shards") == "damaged":
        keys += [f"d_{index:02d}" for index in range(3)]  # the samples before the damage
    return sorted(keys)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_killed_job_resumed_delivers_the_epoch_exactly_once_then_the_next_epoch_unchanged(outcomes, shard_sets, name):
    references, results = outcomes
    reference, outcome, config = references[name], results[name], SCENARIOS[name]["config"]
    for number, leg in enumerate(outcome["legs"]):
        expected = 0 if leg["steps"] is None else -signal.SIGKILL
        assert leg["returncode"] == expected, f"leg {number} ({leg['steps']} steps) failed:\n{leg['stderr']}"
    assert len(outcome["legs"]) == len(SCENARIOS[name]["steps"]) + 1
    # The uninterrupted runs themselves: every sample once per epoch (those before the damage, under skip).
    for epoch in range(3):
        assert sorted(reference[epoch]) == _all_keys(shard_sets, config), f"uninterrupted epoch {epoch + 1}"
    assert reference[0] != reference[1]

    if SCENARIOS[name]["steps"] == ["epoch"]:  # checkpointed after the whole epoch: the resumed job is in epoch 2
        first, last = outcome["legs"]
        assert first["keys"][0] == reference[0]
        assert last["keys"][0] == reference[1], "the epoch after the checkpoint is not the uninterrupted run's 2nd"
        assert last["keys"][1] == reference[2]
        return
    delivered = [key for leg in outcome["legs"] for key in leg["keys"][0]]
    counts = collections.Counter(delivered)
    assert sorted(counts) == sorted(reference[0]), "samples missing from (or foreign to) the interrupted epoch"
    assert [key for key, count in counts.items() if count > 1] == [], "samples delivered twice"
    for leg in outcome["legs"][:-1]:
        assert len(leg["keys"][0]) == min(leg["steps"] * (config.get("batch_size") or 1), len(reference[0]))
    assert delivered == reference[0], "the resumed epoch is not in the uninterrupted run's order"
    assert outcome["legs"][-1]["keys"][1] == reference[1], "the next epoch differs from the uninterrupted run's"


# ---------------------------------------------------------------------------------------------- bytes on resume

SAMPLES, SAMPLE_BYTES, PART = 40, 20_000, 64 << 10
#: a sample's bytes in the tar: the cls member (a header and a block), the bin member (a header and its blocks)
SAMPLE_SPAN = 1024 + 512 + -(-SAMPLE_BYTES // 512) * 512


@pytest.mark.parametrize("shuffle_buffer", [1, 4])
def test_resuming_mid_shard_fetches_what_is_left_of_it_not_the_whole_shard(s3_server, s3_bucket, shuffle_buffer):
    """boto3 on the local S3 server, parts of 64 KiB: a state taken after 25 of 40 samples of 20 KB resumes
    with ranged GETs from the next member header: the 15 samples left (and the buffered ones, read again)."""
    import boto3
    from torchdata.stateful_dataloader import StatefulDataLoader

    from torchdata_s3ext import wds_pipe

    buffer = io.BytesIO()
    write_tar(buffer, [(f"big_{index:03d}", {"cls": b"1", "bin": os.urandom(SAMPLE_BYTES)}) for index in range(SAMPLES)])
    shard = buffer.getvalue()
    boto3.client("s3", endpoint_url=s3_server.endpoint_url).put_object(Bucket=s3_bucket, Key="big/shard-000000.tar",
                                                                         Body=shard)
    url = f"s3://{s3_bucket}/big/shard-000000.tar"

    def new_pipe():
        return wds_pipe([url], seed=0, shuffle_buffer=shuffle_buffer, decode=False, backend="boto3", part_size=PART,
                        concurrency=1)

    taken = 25
    first = StatefulDataLoader(new_pipe(), batch_size=None, num_workers=0)
    iterator = iter(first)
    delivered = [next(iterator)["__key__"] for _ in range(taken)]
    state = first.state_dict()
    del iterator, first
    gc.collect()

    pipe = new_pipe()
    resumed = StatefulDataLoader(pipe, batch_size=None, num_workers=0)
    resumed.load_state_dict(state)
    before = pipe.stats.snapshot()
    rest = [sample["__key__"] for sample in resumed]
    fetched = (pipe.stats - before).bytes_received
    assert sorted(delivered + rest) == [f"big_{index:03d}" for index in range(SAMPLES)]
    # what follows the last sample taken from upstream (samples and the end-of-archive blocks)
    left = len(shard) - (taken + shuffle_buffer - 1) * SAMPLE_SPAN
    print(f"\nshuffle_buffer={shuffle_buffer}: {fetched} bytes fetched on resume, of a {len(shard)}-byte shard "
          f"({left} bytes after the last sample taken upstream, parts of {PART})")
    if shuffle_buffer == 1:
        assert 0 < fetched < left + 2 * PART, (fetched, left, len(shard))
    else:  # the buffered samples are read again from where they lie, with no byte read twice
        assert 0 < fetched < len(shard) + PART, (fetched, left, len(shard))
