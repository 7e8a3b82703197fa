"""The ``raw-parallel`` ceiling: ``auto``'s ranged GETs, bodies read and discarded, over HTTP from moto."""
import json

from torchdata_s3ext.s3.stats import process_stats
from torchdata_s3ext.tools.bench.methods import RAW_PARALLEL, MethodContext
from torchdata_s3ext.tools.bench.raw import TarSampleCounter, object_chunks, object_parts
from torchdata_s3ext.tools.bench.runner import BenchJob, run_method
from torchdata_s3ext.tools.cli import main

def _config(s3_server):
    return MethodContext(urls=(), endpoint_url=s3_server.endpoint_url, region="us-east-1").s3_config()


def _single_stream(url, config) -> bytes:
    return b"".join(object_chunks(url, config))


TINY = ["--shards", "2", "--samples-per-shard", "3", "--size", "16", "--jobs", "2"]


def test_object_parts_give_every_byte_in_order_as_ranged_gets_of_part_size(wds_shards, s3_server):
    shards = wds_shards(num_shards=1, samples_per_shard=5, image_size=16)
    url = shards.urls[0]
    config = _config(s3_server)
    expected = _single_stream(url, config)
    part_size = 1000
    before = process_stats().snapshot()
    parts = [bytes(part) for part in object_parts(url, config, part_size=part_size, concurrency=3)]
    received = process_stats() - before
    assert b"".join(parts) == expected
    assert [len(part) for part in parts[:-1]] == [part_size] * (len(parts) - 1)
    assert received.gets == len(parts) == -(-len(expected) // part_size)
    assert received.bytes_received == len(expected)


def test_object_parts_count_the_samples_of_the_tar_like_the_single_stream(wds_shards, s3_server):
    shards = wds_shards(num_shards=1, samples_per_shard=4, image_size=8)
    config = _config(s3_server)
    counter = TarSampleCounter()
    for part in object_parts(shards.urls[0], config, part_size=700, concurrency=2):
        counter.feed(part)
    assert counter.samples == 4
    assert counter.payload_bytes == sum(len(data) for fields in shards.samples.values() for data in fields.values())


def test_raw_parallel_runs_in_the_bench_and_counts_the_bytes_of_the_objects(wds_shards, s3_server):
    shards = wds_shards(num_shards=2, samples_per_shard=3, image_size=8)
    context = MethodContext(urls=tuple(shards.urls), endpoint_url=s3_server.endpoint_url, region="us-east-1",
                            part_size=1024, concurrency=2)
    result = run_method(BenchJob(method=RAW_PARALLEL, context=context, batch_size=2, num_workers=0, batches=6, window=2))
    assert result["status"] == "ok" and result["samples"] == 12
    sizes = [len(_single_stream(url, _config(s3_server))) for url in shards.urls]
    assert result["request_stats_per_epoch"]["bytes_received"] == sum(sizes)
    assert result["request_stats_per_epoch"]["gets"] == sum(-(-size // 1024) for size in sizes)


def test_bench_puts_raw_parallel_beside_raw_in_the_table_and_the_json(tmp_path, capsys):
    dataset, out = tmp_path / "data", tmp_path / "results"
    main(["make-dataset", str(dataset), *TINY, "--no-progress"])
    code = main(["bench", str(dataset), "--server", "moto", "--methods", "boto3", "raw", "raw-parallel",
                 "--batch-size", "2", "--batches", "6", "--window", "2", "--time-limit", "60", "--num-workers", "0", "1",
                 "--out", str(out)])
    output = capsys.readouterr().out
    assert code == 0, output
    assert "x raw-par" in output
    rows = json.loads((out / "results.json").read_text())["results"]
    assert [(row["method"], row["num_workers"]) for row in rows] == [
        ("boto3", 0), ("boto3", 1), ("raw", 0), ("raw-parallel", 0)]
    assert all(row["status"] == "ok" and row["samples"] == 12 for row in rows)
    assert rows[0]["ratio_to_raw_parallel"] is not None
