"""Checkpoints over ranks (gloo on 127.0.0.1, one process per rank running ``checkpoint_job.py``), each rank
with a ``StatefulDataLoader`` over ``wds_pipe``:

- same world size: each rank saves its own state and the next job's ranks load theirs: every sample once across
  ranks, in each rank's uninterrupted order, and the next epoch is the uninterrupted run's;
- elastic: 2 ranks x 2 workers -> ``merge_states`` -> 1 process x 3 workers (killed after its checkpoint) ->
  ``merge_states`` -> 2 ranks x 1 worker: every sample not yet delivered once, none twice, the next epoch whole.

Three launches of processes in all: the first ranks run the uninterrupted reference and both first legs, the
single process the elastic middle leg, the last ranks both resumptions.
"""
import collections
import json
import os
import signal
import socket
import subprocess
import sys
from typing import Any, Dict, List

import pytest
import torch

from torchdata_s3ext import merge_states
from torchdata_s3ext.testing import write_tar

JOB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoint_job.py")
TIMEOUT_S = 150
WORLD_SIZE = 2
#: 8 uneven shards, one empty: 32 samples, 2 shards per reader of 2 ranks x 2 workers
SHARD_SIZES = [5, 3, 0, 7, 4, 6, 2, 5]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(spec: Dict[str, Any], workdir: str, name: str, ranks: int) -> List[subprocess.CompletedProcess]:
    """Run the job as ``ranks`` ranks of a gloo group (``ranks=0``: one process, no group); bounded in time."""
    path = os.path.join(workdir, f"{name}.json")
    with open(path, "w") as spec_file:
        json.dump(spec, spec_file)
    port = _free_port()
    processes = []
    for rank in range(max(ranks, 1)):
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        if ranks:
            env.update(RANK=str(rank), WORLD_SIZE=str(ranks), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        processes.append(subprocess.Popen([sys.executable, JOB, path], env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, start_new_session=True))
    results = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate(timeout=30)
            err += f"\n(killed after {TIMEOUT_S} s)"
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def _keys(path: str) -> Dict[int, List[str]]:
    tagged: Dict[int, List[str]] = collections.defaultdict(list)
    with open(path) as keys_file:
        for line in keys_file:
            tag, key = line.split()
            tagged[int(tag)].append(key)
    return tagged


def _assert_exactly_once(delivered: List[str], expected: List[str], what: str) -> None:
    counts = collections.Counter(delivered)
    assert sorted(key for key, count in counts.items() if count > 1) == [], f"{what}: delivered twice"
    assert sorted(set(expected) - set(counts)) == [], f"{what}: never delivered"
    assert sorted(counts) == sorted(expected), f"{what}: foreign samples"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rank-shards")
    shards, keys = [], []
    for shard, count in enumerate(SHARD_SIZES):
        shards.append(str(folder / f"shard-{shard:06d}.tar"))
        samples = [(f"s{shard}_{index:02d}", {"cls": b"7", "txt": b"t" * 200}) for index in range(count)]
        with open(shards[-1], "wb") as tar:
            write_tar(tar, samples)
        keys += [key for key, _ in samples]
    work = str(tmp_path_factory.mktemp("rank-jobs"))
    at = lambda name: os.path.join(work, name)  # noqa: E731
    base = dict(pipe="wds", shards=shards, seed=0, buffer=4, context="fork", kill=False)

    first = _launch({"legs": [
        dict(base, num_workers=1, steps=None, epochs_after=1, keys_out=at("ref.{rank}.keys")),
        dict(base, num_workers=1, steps=4, keys_out=at("same1.{rank}.keys"), state_out=at("same1.{rank}.pt")),
        dict(base, num_workers=2, steps=3, keys_out=at("el1.{rank}.keys"), state_out=at("el1.{rank}.pt")),
    ]}, work, "first", WORLD_SIZE)
    for rank, done in enumerate(first):
        assert done.returncode == 0, f"rank {rank} of the first job:\n{done.stderr[-3000:]}"

    merged1 = merge_states([torch.load(at(f"el1.{rank}.pt"), weights_only=False) for rank in range(WORLD_SIZE)])
    torch.save(merged1, at("el1.merged.pt"))
    (middle,) = _launch(dict(base, num_workers=3, steps=4, kill=True, merged=at("el1.merged.pt"),
                             keys_out=at("el2.keys"), state_out=at("el2.pt")), work, "middle", 0)
    assert middle.returncode == -signal.SIGKILL, f"the 1 x 3 job:\n{middle.stderr[-3000:]}"
    merged2 = merge_states([torch.load(at("el2.pt"), weights_only=False)])
    torch.save(merged2, at("el2.merged.pt"))

    last = _launch({"legs": [
        dict(base, num_workers=1, steps=None, resume=at("same1.{rank}.pt"), keys_out=at("same2.{rank}.keys")),
        dict(base, num_workers=1, steps=None, merged=at("el2.merged.pt"), keys_out=at("el3.{rank}.keys")),
    ]}, work, "last", WORLD_SIZE)
    for rank, done in enumerate(last):
        assert done.returncode == 0, f"rank {rank} of the last job:\n{done.stderr[-3000:]}"
    return keys, at, {"merged1": merged1, "merged2": merged2}


def test_ranks_resumed_from_their_own_states_deliver_every_sample_once_in_their_orders(runs):
    keys, at, _ = runs
    ranks = range(WORLD_SIZE)
    reference = [_keys(at(f"ref.{rank}.keys")) for rank in ranks]
    _assert_exactly_once([key for rank in ranks for key in reference[rank][0]], keys, "uninterrupted epoch 1")
    first, second = [_keys(at(f"same1.{rank}.keys")) for rank in ranks], [_keys(at(f"same2.{rank}.keys")) for rank in ranks]
    for rank in ranks:
        assert len(first[rank][0]) == 4
    delivered = [key for rank in ranks for key in first[rank][0] + second[rank][0]]
    _assert_exactly_once(delivered, keys, "the interrupted epoch over both ranks and both jobs")
    for rank in ranks:
        assert first[rank][0] + second[rank][0] == reference[rank][0], f"rank {rank}'s resumed order"
        assert second[rank][1] == reference[rank][1], f"rank {rank}'s next epoch differs from the uninterrupted one"


def test_elastic_two_by_two_then_one_by_three_then_two_by_one_delivers_every_sample_once(runs):
    keys, at, merged = runs
    ranks = range(WORLD_SIZE)
    first = [_keys(at(f"el1.{rank}.keys")) for rank in ranks]
    middle = _keys(at("el2.keys"))
    last = [_keys(at(f"el3.{rank}.keys")) for rank in ranks]
    assert [len(first[rank][0]) for rank in ranks] == [3, 3] and len(middle[0]) == 4
    delivered = [key for rank in ranks for key in first[rank][0]] + middle[0] + [key for rank in ranks for key in last[rank][0]]
    _assert_exactly_once(delivered, keys, "the epoch over 2x2, then 1x3, then 2x1 readers")
    _assert_exactly_once([key for rank in ranks for key in last[rank][1]], keys, "the epoch after, over 2x1 readers")
    reference = [_keys(at(f"ref.{rank}.keys")) for rank in ranks]
    for rank in ranks:  # epoch 2 of 2 ranks x 1 worker, as in the uninterrupted run of that layout
        assert last[rank][1] == reference[rank][1], f"rank {rank}'s epoch after the elastic resumption"
    # the merged states name no reader and hold no sample bytes
    for state in merged.values():
        assert state["reader"] is None and b"t" * 200 not in repr(state).encode()
    # ... and say what each reader of the job they merge had left: 4 readers, then 3 (each resumed from the first)
    assert [share["reader"] for share in merged["merged1"]["merged"]["shares"]] == [[index, 4] for index in range(4)]
    assert [share["reader"] for share in merged["merged2"]["merged"]["shares"]] == [[index, 3] for index in range(3)]

