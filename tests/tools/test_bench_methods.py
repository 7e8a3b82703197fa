"""The bench's methods and its decode stage, read over HTTP from moto: every peer yields the same samples."""
import importlib.util
import inspect
import io
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from torchdata_s3ext.tools.bench.decoders import DecodeJob, first_samples, pil_pair
from torchdata_s3ext.s3.backends import get_opener
from torchdata_s3ext.tools.bench.methods import (ENCODED_BYTES, METHODS, NEEDS_TORCHDATA_DATAPIPES, PEERS, RANGED_BACKENDS,
                                                 MethodContext, build_dataset, decoded_sample, unavailable_reason, with_decode)
from torchdata_s3ext.tools.bench.measure import payload_bytes
from torchdata_s3ext.tools.bench.runner import BenchJob
from torchdata_s3ext.testing import seed_samples

needs_s3torchconnector = pytest.mark.skipif(importlib.util.find_spec("s3torchconnector") is None,
                                            reason="s3torchconnector is not installed")


def _context(shards, s3_server) -> MethodContext:
    return MethodContext(urls=tuple(shards.urls), endpoint_url=s3_server.endpoint_url, region="us-east-1")


def _sample_dict(key, fields):
    return {"__key__": key, "__url__": "s3://bucket/shard-000000.tar", **fields}


def test_every_peer_is_a_method():
    assert set(PEERS) | set(PEERS.values()) <= set(METHODS)


def test_part_size_and_concurrency_reach_every_backend_that_reads_ranged_parts():
    assert RANGED_BACKENDS == ("boto3", "fsspec", "iopath")
    context = MethodContext(urls=(), part_size=4 << 20, concurrency=2)
    for backend in RANGED_BACKENDS:
        assert context.ranged_options(backend) == {"part_size": 4 << 20, "concurrency": 2}
        assert {"part_size", "concurrency"} <= set(inspect.signature(get_opener(backend)).parameters)


def test_ranged_options_leave_out_other_backends_and_unset_values():
    assert MethodContext(urls=(), part_size=4 << 20, concurrency=2).ranged_options("awscli") == {}
    assert MethodContext(urls=(), concurrency=2).ranged_options("iopath") == {"concurrency": 2}
    assert MethodContext(urls=(), memory_budget=64 << 20).ranged_options("boto3") == {"memory_budget": 64 << 20}


@pytest.mark.parametrize("method", [
    "boto3-bytesio",
    pytest.param("s3torchconnector-tarfile", marks=needs_s3torchconnector),
    "webdataset-awscli",
])
def test_peer_methods_yield_every_sample_as_image_and_label_bytes(method, wds_shards, s3_server):
    shards = wds_shards(num_shards=2, samples_per_shard=3, image_size=8)
    samples = list(build_dataset(method, _context(shards, s3_server)))
    assert [sample["__key__"] for sample in samples] == shards.keys
    for sample in samples:
        assert sample["image"] == shards.samples[sample["__key__"]]["image"]
        assert sample["label"] == shards.samples[sample["__key__"]]["label"]


@pytest.mark.parametrize("method", ["boto3", "boto3-bytesio", "webdataset-awscli"])
def test_with_decode_gives_tensors_in_dataloader_workers_for_every_kind_of_method(method, wds_shards, s3_server):
    shards = wds_shards(num_shards=2, samples_per_shard=2, image_size=8)
    dataset = with_decode(build_dataset(method, _context(shards, s3_server)), "pil")
    batches = list(DataLoader(dataset, batch_size=2, num_workers=1))
    assert sorted(key for batch in batches for key in batch["__key__"]) == sorted(shards.keys)
    for batch in batches:
        assert batch["image"].shape == (2, 3, 8, 8) and batch["image"].dtype == torch.uint8
        assert batch["label"].shape == (2, 8, 8)
    encoded = sum(len(data) for fields in shards.samples.values() for data in fields.values())
    assert sum(payload_bytes(batch) for batch in batches) == encoded


def test_with_decode_none_leaves_the_dataset_as_it_is():
    dataset = [object()]
    assert with_decode(dataset, "none") is dataset


def test_decoded_sample_keeps_the_encoded_size_of_its_bytes():
    (key, fields), = seed_samples(1, image_size=4)
    decoded = decoded_sample(_sample_dict(key, fields), "pil")
    assert decoded[ENCODED_BYTES] == len(fields["image"]) + len(fields["label"])
    assert decoded["image"].shape == (3, 4, 4) and decoded["__key__"] == key


def test_payload_bytes_counts_encoded_sizes_of_a_collated_decoded_batch_not_its_tensors():
    batch = {"__key__": ["a", "b"], "image": torch.zeros(2, 3, 4, 4, dtype=torch.uint8), ENCODED_BYTES: torch.tensor([10, 32])}
    assert payload_bytes(batch) == 42


def test_pil_baseline_gives_the_same_pixels_as_decode_png_pair():
    (key, fields), = seed_samples(1, image_size=6)
    image, label = pil_pair(_sample_dict(key, fields))
    decoded = decoded_sample(_sample_dict(key, fields), "auto")
    assert np.array_equal(image, decoded["image"].permute(1, 2, 0).numpy())
    assert np.array_equal(label, decoded["label"].numpy())
    assert np.array_equal(label, np.asarray(Image.open(io.BytesIO(fields["label"]))))


def test_first_samples_reads_only_the_first_shard(wds_shards, s3_server):
    shards = wds_shards(num_shards=2, samples_per_shard=3, image_size=8)
    samples = first_samples(_context(shards, s3_server), 5)
    assert [sample["__key__"] for sample in samples] == shards.keys_by_url[shards.urls[0]]


def test_jobs_survive_the_trip_to_the_child_process():
    context = MethodContext(urls=("s3://b/shard-000000.tar",), mount_paths=None, endpoint_url="http://127.0.0.1:9")
    bench_job = BenchJob(method="boto3", context=context, num_workers=2, decoder="auto")
    assert BenchJob.from_json(bench_job.to_json()) == bench_job
    decode_job = DecodeJob(context=context, decoders=("pil", "auto"), samples=3, rounds=2)
    assert DecodeJob.from_json(decode_job.to_json()) == decode_job


def test_s3torchconnector_tarfile_is_unavailable_without_s3torchconnector(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    context = MethodContext(urls=("s3://b/shard-000000.tar",))
    assert unavailable_reason("s3torchconnector-tarfile", context) == "s3torchconnector is not installed"


def test_torchdata_openers_are_not_measured_without_torchdata_datapipes(monkeypatch):
    from torchdata_s3ext.tools.bench.runner import run_methods

    monkeypatch.setitem(sys.modules, "torchdata.datapipes", None)  # as on torchdata 0.10 and later: not importable
    context = MethodContext(urls=("s3://b/shard-000000.tar",), mount_paths=("/data/shard-000000.tar",))
    for method in NEEDS_TORCHDATA_DATAPIPES:
        assert unavailable_reason(method, context) == "needs torchdata 0.9's datapipes"
    assert unavailable_reason("boto3", context) is None and unavailable_reason("boto3-bytesio", context) is None
    rows = run_methods([BenchJob(method=method, context=context) for method in NEEDS_TORCHDATA_DATAPIPES])
    assert [(row["status"], row["error"]) for row in rows] == [("unavailable", "needs torchdata 0.9's datapipes")] * 4


def _pipe_modules(dataset):
    """The top-level package of every pipe of a chain (ours hold their source as ``source_datapipe``, torch's
    as ``datapipe``)."""
    seen, pending = set(), [dataset]
    while pending:
        pipe = pending.pop()
        seen.add(type(pipe).__module__.split(".")[0])
        pending.extend(source for source in (getattr(pipe, "source_datapipe", None), getattr(pipe, "datapipe", None))
                       if source is not None)
    return seen


@pytest.mark.parametrize("method", [name for name, (_, builder, _) in METHODS.items()
                                    if builder is not None and name not in NEEDS_TORCHDATA_DATAPIPES])
def test_other_methods_are_made_of_torchs_datapipes_and_ours_only(method):
    if unavailable_reason(method, MethodContext(urls=("s3://b/a.tar",), mount_paths=("/a.tar",))):
        pytest.skip(f"{method} cannot run here")
    dataset = build_dataset(method, MethodContext(urls=("s3://b/a.tar",), mount_paths=("/a.tar",),
                                                  endpoint_url="http://127.0.0.1:9"))
    if method == "webdataset-awscli":
        assert type(dataset).__module__.split(".")[0] == "webdataset"
        return
    if method == "wds-node":  # torchdata.nodes' Loader over our node, no datapipe at all
        assert type(dataset).__module__.startswith("torchdata.nodes") and "torchdata_s3ext" in type(dataset.root).__module__
        return
    assert _pipe_modules(dataset) <= {"torch", "torchdata_s3ext"}
