"""``bench --server-cpus --client-cpus``: the server the bench starts and every measured process run on the
CPUs given, as the OS reports them; the bench's own process gets its CPUs back; CPU s/GB beside samples/s."""
import json
import os
import subprocess
import sys

import pytest

from torchdata_s3ext.tools.bench.cpus import affinity, pinned_to
from torchdata_s3ext.tools.bench.report import cpu_seconds_per_gb, format_table, with_ratios
from torchdata_s3ext.tools.cli import main

needs_two_cpus = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux's CPU affinity and two CPUs this process may use",
)


@needs_two_cpus
def test_pinned_to_gives_a_process_started_within_its_cpus_and_this_thread_its_own_back():
    before = affinity()
    cpu = before[-1]
    with pinned_to([cpu]):
        assert affinity() == (cpu,)
        child = subprocess.Popen([sys.executable, "-c", "import os, time; time.sleep(30)"])
    try:
        assert affinity(child.pid) == (cpu,)
        assert affinity() == before
    finally:
        child.kill()
        child.wait(timeout=10)


def test_pinned_to_none_leaves_the_cpus_as_they_are():
    before = affinity()
    with pinned_to(None):
        assert affinity() == before


@needs_two_cpus
def test_bench_runs_the_server_and_each_measured_process_on_the_cpus_given(tmp_path, capsys):
    server_cpu, client_cpu = affinity()[-1], affinity()[0]
    before = affinity()
    out = tmp_path / "results"
    code = main(["bench", "--server", "moto", "--server-cpus", str(server_cpu), "--client-cpus", str(client_cpu),
                 "--methods", "raw", "boto3", "--num-workers", "1", "--shards", "2", "--samples-per-shard", "3",
                 "--size", "16", "--batch-size", "2", "--batches", "4", "--window", "2", "--out", str(out)])
    output = capsys.readouterr().out
    assert code == 0, output
    assert affinity() == before
    report = json.loads((out / "results.json").read_text())
    assert report["settings"]["server_cpus"] == [server_cpu] and report["settings"]["client_cpus"] == [client_cpu]
    assert report["settings"]["server_cpus_seen"] == [server_cpu]  # asked of the OS while the server ran
    for row in report["results"]:
        assert row["status"] == "ok", row
        assert row["cpus"] == [client_cpu]  # asked of the OS by the measuring process itself
        assert row["cpu_s_per_gb"] == pytest.approx(row["cpu_s"] / (row["payload_bytes"] / 1e9))
    assert f"server on CPUs {server_cpu}, client on CPUs {client_cpu}" in output
    header = next(line for line in output.splitlines() if line.startswith("method "))
    assert header.split()[:5] == ["method", "workers", "samples/s", "CPU", "s/GB"]


def test_cpu_seconds_per_gb_is_left_out_where_nothing_was_read():
    assert cpu_seconds_per_gb({"cpu_s": 2.0, "payload_bytes": 500_000_000}) == pytest.approx(4.0)
    assert cpu_seconds_per_gb({"cpu_s": 2.0, "payload_bytes": 0}) is None
    assert cpu_seconds_per_gb({"status": "error"}) is None
    rows = with_ratios([{"method": "raw", "num_workers": 0, "status": "ok", "samples_per_s": 10.0, "cpu_s": 1.0,
                         "payload_bytes": 250_000_000}])
    assert rows[0]["cpu_s_per_gb"] == pytest.approx(4.0)
    table = format_table(rows).splitlines()
    assert table[2].split()[:4] == ["raw", "0", "10.0", "4.0"]
    assert "CPU s/GB: CPU seconds of the method's process and its workers per GB of sample bytes read" in "\n".join(table)
