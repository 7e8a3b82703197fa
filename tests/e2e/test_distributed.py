"""Two ranks (torch.distributed, gloo on loopback) x two DataLoader workers each, over uneven shards on the
local S3 server: every sample exactly once across ranks, and equal counts per rank with ``equalize``; under
``DataLoader`` and, where torchdata 0.9 is installed, ``DataLoader2`` with our reading service."""
import collections
import json
import multiprocessing
import socket
import traceback
import uuid
from datetime import timedelta
from typing import Any, Dict, List

import boto3
import pytest
import torch.distributed as dist
from torch.utils.data import DataLoader

from test_exactly_once import SHARD_SIZES, sample_key_pipe
from torchdata_s3ext import RankEqualizer, reading_service
from torchdata_s3ext.faces.dataloader2 import has_torchdata_datapipes
from torchdata_s3ext.testing import seed_samples, tar_bytes

WORLD_SIZE = 2
WORKERS_PER_RANK = 2
RANK_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _epochs_on_reading_service(shard_urls: List[str], equalize: Any, distributed: Any = None) -> Dict[str, Any]:
    from torchdata.dataloader2 import DataLoader2

    service = reading_service(
        WORKERS_PER_RANK, distributed, equalize=equalize, multiprocessing_context="fork", timeout=60
    )
    with DataLoader2(sample_key_pipe(shard_urls), reading_service=service) as loader:
        epochs, dropped, repeated = [], [], []
        for _ in range(2):
            epochs.append(list(loader))
            dropped.append(loader.reading_service.samples_dropped)
            repeated.append(loader.reading_service.samples_repeated)
    return {"epochs": epochs, "dropped": dropped, "repeated": repeated}


def _epochs_on_dataloader(shard_urls: List[str], equalize: Any, distributed: Any = None) -> Dict[str, Any]:
    ranks = {} if distributed is not False else {"rank": 0, "world_size": 1}  # every rank one of one: reads all
    loader = DataLoader(
        sample_key_pipe(shard_urls, **ranks), batch_size=None, num_workers=WORKERS_PER_RANK,
        multiprocessing_context="fork", timeout=60,
    )
    samples = RankEqualizer(loader, equalize) if equalize else loader
    epochs, dropped, repeated = [], [], []
    for _ in range(2):
        epochs.append(list(samples))
        dropped.append(getattr(samples, "samples_dropped", 0))
        repeated.append(getattr(samples, "samples_repeated", 0))
    return {"epochs": epochs, "dropped": dropped, "repeated": repeated}


SCENARIOS = {
    "dataloader": (_epochs_on_dataloader, None, None),
    "dataloader_drop": (_epochs_on_dataloader, "drop", None),
    "dataloader_pad": (_epochs_on_dataloader, "pad", None),
    "dataloader_not_distributed": (_epochs_on_dataloader, None, False),
}
if has_torchdata_datapipes():
    SCENARIOS.update({
        "reading_service": (_epochs_on_reading_service, None, None),
        "reading_service_drop": (_epochs_on_reading_service, "drop", None),
        "reading_service_pad": (_epochs_on_reading_service, "pad", None),
        "reading_service_not_distributed": (_epochs_on_reading_service, None, False),
    })
READING_SERVICE = pytest.mark.dataloader2


def _rank_main(rank: int, port: int, shard_urls: List[str], results_path: str) -> None:
    outcome: Dict[str, Any] = {}
    try:
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE, timeout=timedelta(seconds=60)
        )
        for name, (run, equalize, distributed) in SCENARIOS.items():
            outcome[name] = run(shard_urls, equalize, distributed)
        try:
            _epochs_on_dataloader(shard_urls[:1], "pad")
        except RuntimeError as error:
            outcome["pad_without_samples_on_a_rank"] = str(error)
        dist.destroy_process_group()
    except BaseException:
        outcome["error"] = traceback.format_exc()
    with open(f"{results_path}.{rank}", "w") as results_file:
        json.dump(outcome, results_file)


@pytest.fixture(scope="module")
def distributed_run(s3_server, tmp_path_factory):
    """Shards on the local server, then both ranks run every scenario once; yields (keys, results by rank)."""
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1")
    bucket = f"test-dist-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    shard_urls, keys, first_index = [], [], 0
    for shard_index, count in enumerate(SHARD_SIZES):
        samples = list(seed_samples(count, image_size=8, first_index=first_index))
        first_index += count
        client.put_object(Bucket=bucket, Key=f"train/shard-{shard_index:06d}.tar", Body=tar_bytes(samples))
        shard_urls.append(f"s3://{bucket}/train/shard-{shard_index:06d}.tar")
        keys += [key for key, _ in samples]

    results_path = str(tmp_path_factory.mktemp("ranks") / "results")
    context = multiprocessing.get_context("spawn")
    port = _free_port()
    ranks = [context.Process(target=_rank_main, args=(rank, port, shard_urls, results_path)) for rank in range(WORLD_SIZE)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(RANK_TIMEOUT_S)
    hung = [process for process in ranks if process.is_alive()]
    for process in hung:
        process.kill()
        process.join(10)
    assert not hung, f"{len(hung)} rank(s) did not finish within {RANK_TIMEOUT_S} s"
    results = []
    for rank in range(WORLD_SIZE):
        with open(f"{results_path}.{rank}") as results_file:
            outcome = json.load(results_file)
        assert "error" not in outcome, f"rank {rank} failed:\n{outcome['error']}"
        results.append(outcome)
    return keys, results


@pytest.mark.parametrize("scenario", [pytest.param("reading_service", marks=READING_SERVICE), "dataloader"])
def test_two_ranks_two_workers_deliver_every_sample_once(distributed_run, scenario):
    keys, results = distributed_run
    for epoch in range(2):
        delivered = [key for outcome in results for key in outcome[scenario]["epochs"][epoch]]
        assert sorted(delivered) == sorted(keys), f"epoch {epoch}: samples missing or repeated across ranks"
    assert results[0][scenario]["epochs"][0] != results[0][scenario]["epochs"][1]


@pytest.mark.parametrize("scenario", [pytest.param("reading_service_drop", marks=READING_SERVICE), "dataloader_drop"])
def test_equalize_drop_gives_every_rank_the_same_count_and_reports_the_rest(distributed_run, scenario):
    keys, results = distributed_run
    for epoch in range(2):
        per_rank = [outcome[scenario]["epochs"][epoch] for outcome in results]
        assert len({len(samples) for samples in per_rank}) == 1, [len(samples) for samples in per_rank]
        delivered = [key for samples in per_rank for key in samples]
        assert len(set(delivered)) == len(delivered), "a sample was delivered twice"
        dropped = sum(outcome[scenario]["dropped"][epoch] for outcome in results)
        assert len(delivered) + dropped == len(keys)


@pytest.mark.parametrize("scenario", [pytest.param("reading_service_pad", marks=READING_SERVICE), "dataloader_pad"])
def test_equalize_pad_gives_every_rank_the_same_count_and_reports_repeats(distributed_run, scenario):
    keys, results = distributed_run
    for epoch in range(2):
        per_rank = [outcome[scenario]["epochs"][epoch] for outcome in results]
        assert len({len(samples) for samples in per_rank}) == 1, [len(samples) for samples in per_rank]
        counts = collections.Counter(key for samples in per_rank for key in samples)
        assert set(counts) == set(keys), "a sample was never delivered"
        repeated = sum(outcome[scenario]["repeated"][epoch] for outcome in results)
        assert sum(counts.values()) - len(keys) == repeated


@pytest.mark.parametrize(
    "scenario", [pytest.param("reading_service_not_distributed", marks=READING_SERVICE), "dataloader_not_distributed"])
def test_every_rank_reads_everything_when_not_split_over_ranks(distributed_run, scenario):
    keys, results = distributed_run
    for outcome in results:
        for samples in outcome[scenario]["epochs"]:
            assert sorted(samples) == sorted(keys)


def test_equalize_pad_fails_on_every_rank_when_a_rank_has_nothing_to_repeat(distributed_run):
    _, results = distributed_run
    for outcome in results:
        assert "needs at least one sample on every rank" in outcome.get("pad_without_samples_on_a_rank", "")
