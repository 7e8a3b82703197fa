"""The ``torchdata-s3ext`` command end to end, on tiny shards and a local S3 server."""
import io
import json
import os
import subprocess
import sys
import tarfile

import boto3
import pytest
from PIL import Image

from torchdata_s3ext._bench.s3rver import default_cache_dir
from torchdata_s3ext.cli import main
from torchdata_s3ext.testing import seed_samples

TINY = ["--shards", "2", "--samples-per-shard", "3", "--size", "16", "--jobs", "2"]
QUICK_BENCH = ["--batch-size", "2", "--num-workers", "1", "--batches", "6", "--window", "2", "--time-limit", "60"]


def _members(shard: bytes):
    with tarfile.open(fileobj=io.BytesIO(shard), mode="r|") as tar:
        return [(member.name, tar.extractfile(member).read()) for member in tar]


def _expected_members(shard_index: int, samples_per_shard: int = 3):
    samples = seed_samples(samples_per_shard, image_size=16, first_index=shard_index * samples_per_shard)
    return [(f"{key}.{field}", data) for key, fields in samples for field, data in fields.items()]


def _table_methods(output: str):
    lines = output.splitlines()
    header = next(index for index, line in enumerate(lines) if line.startswith("method "))
    rows = []
    for line in lines[header + 2:]:
        if not line.strip():
            break
        rows.append(line.split()[0])
    return rows


def test_make_dataset_writes_seeded_shards_to_s3_byte_exact(s3_server, s3_bucket):
    assert main(["make-dataset", f"s3://{s3_bucket}/train", *TINY, "--no-progress", "--endpoint-url", s3_server.endpoint_url]) == 0
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url)
    keys = [entry["Key"] for entry in client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == ["train/shard-000000.tar", "train/shard-000001.tar"]
    for shard_index, key in enumerate(keys):
        shard = client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
        assert _members(shard) == _expected_members(shard_index)


def test_make_dataset_writes_a_local_folder_with_the_same_samples(tmp_path):
    assert main(["make-dataset", str(tmp_path / "data"), *TINY, "--no-progress"]) == 0
    assert sorted(os.listdir(tmp_path / "data")) == ["shard-000000.tar", "shard-000001.tar"]
    assert _members((tmp_path / "data" / "shard-000001.tar").read_bytes()) == _expected_members(1)


def test_bench_on_its_own_server_reports_a_row_per_method_json_and_chart(tmp_path, capsys):
    dataset, out = tmp_path / "data", tmp_path / "results"
    main(["make-dataset", str(dataset), *TINY, "--no-progress"])
    methods = ["boto3", "local", "torchdata-fileopener", "raw"]
    code = main([
        "bench", str(dataset), "--server", "moto", "--methods", *methods, *QUICK_BENCH, "--out", str(out),
        "--train-step", "torchdata_s3ext._bench.steps:decode_and_convolve",
    ])
    output = capsys.readouterr().out
    assert code == 0, output
    assert _table_methods(output) == methods
    report = json.loads((out / "results.json").read_text())
    assert [row["method"] for row in report["results"]] == methods
    for row in report["results"]:
        assert row["status"] == "ok", row
        assert row["batches"] == 6 and row["samples"] == 12
        assert row["samples_per_s"] > 0 and row["peak_rss_mb"] > 0 and row["cpu_s"] >= 0
        assert len(row["window_times_s"]) == 3
    for row in report["results"][:-1]:
        assert 0.0 <= row["train_step"]["stall_fraction"] <= 1.0
    assert report["results"][-1]["train_step"] is None  # raw has no batches to train on
    assert report["results"][-1]["ratio_to_raw"] == 1.0
    # one GET per small shard over S3, nothing at all from the local mount
    assert [row["requests_per_epoch"] for row in report["results"]] == [2, 0, 0, 2]
    assert report["results"][0]["cost_usd_per_epoch"] == pytest.approx(2 * 0.0004 / 1000)
    assert "req/epoch: S3 requests of one pass over the shards" in output
    with Image.open(out / "samples_per_s.png") as chart:
        assert chart.format == "PNG" and chart.size[0] > 100


def test_bench_reads_an_s3_prefix_at_an_endpoint_and_reports_what_it_cannot_run(s3_server, s3_bucket, tmp_path, capsys):
    main(["make-dataset", f"s3://{s3_bucket}/train", *TINY, "--no-progress"])
    code = main([
        "bench", f"s3://{s3_bucket}/train", "--endpoint-url", s3_server.endpoint_url, "--methods", "fsspec", "local",
        *QUICK_BENCH, "--out", str(tmp_path),
    ])
    output = capsys.readouterr().out
    assert code == 0, output
    assert _table_methods(output) == ["fsspec", "local"]
    assert "local: needs the shards on a local path" in output
    rows = json.loads((tmp_path / "results.json").read_text())["results"]
    assert [row["status"] for row in rows] == ["ok", "unavailable"]


def test_bench_through_an_s3like_link_reports_a_row_per_method_with_its_requests(tmp_path, capsys):
    dataset, out = tmp_path / "data", tmp_path / "results"
    main(["make-dataset", str(dataset), *TINY, "--no-progress"])
    methods = ["boto3", "fsspec", "torchdata-fsspec", "raw"]
    code = main([
        "bench", str(dataset), "--server", "moto", "--link", "s3like", "--link-mbps", "50", "--link-latency-ms", "5",
        "--methods", *methods, *QUICK_BENCH, "--out", str(out),
    ])
    output = capsys.readouterr().out
    assert code == 0, output
    assert "link s3like: 50 MB/s and 5 ms to first byte per connection, through http://127.0.0.1:" in output
    assert _table_methods(output) == methods
    report = json.loads((out / "results.json").read_text())
    assert report["settings"]["link"] == "s3like" and report["settings"]["link_mbps"] == 50.0
    assert [row["status"] for row in report["results"]] == ["ok"] * len(methods)
    assert all(row["samples"] == 12 for row in report["results"])
    # per shard: boto3 and raw one GET, our fsspec a HEAD and a GET; torchdata's opener's are not seen
    requests = {row["method"]: row["request_stats_per_epoch"] for row in report["results"]}
    assert requests["boto3"]["gets"] == requests["raw"]["gets"] == 2
    assert requests["fsspec"]["heads"] == requests["fsspec"]["gets"] == 2
    assert requests["torchdata-fsspec"] is None


def test_bench_link_s3like_needs_an_http_endpoint(tmp_path):
    main(["make-dataset", str(tmp_path), *TINY, "--no-progress"])
    with pytest.raises(SystemExit, match="--link s3like needs an http:// endpoint"):
        main(["bench", str(tmp_path), "--endpoint-url", "https://s3.example.com", "--link", "s3like", "--methods", "local"])


def test_bench_rejects_an_unknown_method_naming_the_valid_ones(tmp_path):
    with pytest.raises(SystemExit, match="unknown method 'nope'; valid methods: all, boto3"):
        main(["bench", str(tmp_path), "--methods", "nope"])


def test_serve_prints_the_endpoint_and_exports_then_stops_when_told(capsys):
    assert main(["serve", "--bucket", "demo", "--for", "0.5"]) == 0
    output = capsys.readouterr().out
    assert "moto S3 server on http://127.0.0.1:" in output
    assert "export AWS_ENDPOINT_URL=http://127.0.0.1:" in output
    assert "export AWS_ACCESS_KEY_ID=testing" in output
    assert output.rstrip().endswith("stopped")


def test_python_dash_m_runs_the_command():
    finished = subprocess.run(
        [sys.executable, "-m", "torchdata_s3ext", "bench", "--list-methods"], capture_output=True, text=True, timeout=60,
    )
    assert finished.returncode == 0
    assert finished.stdout.split()[0] == "boto3" and "\nraw " in finished.stdout


@pytest.mark.skipif(not os.path.exists(os.path.join(default_cache_dir(), "node_modules", "s3rver")),
                    reason="s3rver is not installed in the cache (bench --server s3rver installs it with npm)")
def test_bench_on_s3rver_reads_ranges_and_streams(tmp_path, capsys):
    code = main(["bench", "--server", "s3rver", "--methods", "fsspec", "raw", *TINY, *QUICK_BENCH, "--out", str(tmp_path)])
    assert code == 0
    assert _table_methods(capsys.readouterr().out) == ["fsspec", "raw"]
