"""The writing benchmark runs each method and reports its rate and memory (speed itself is measured, not tested)."""
import json
import shutil

import pytest

from torchdata_s3ext.tools.write_bench import main


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI (aws s3 cp is the comparison)")
def test_write_bench_reports_every_method_with_its_rate_and_peak_memory(tmp_path, capsys):
    assert main(["--total-mib", "8", "--runs", "1", "--server", "moto", "--json", str(tmp_path / "out.json")]) == 0
    report = json.loads((tmp_path / "out.json").read_text())
    assert set(report["medians"]) == {"aws s3 ls (the CLI's start)", "ShardWriter (8 MiB parts, 4 in flight)",
                                      "ShardWriter (8 MiB parts, 10 in flight)", "aws s3 cp --recursive (8 MiB parts, 10 in flight)"}
    for name, runs in report["runs"].items():
        assert len(runs) == 1 and runs[0]["seconds"] > 0 and runs[0]["peak_rss_mib"] > 0
        if name.startswith(("ShardWriter", "aws s3 cp")):
            assert runs[0]["bytes"] >= 8 << 20 and runs[0]["mb_per_s"] > 0
    assert "medians of 1 runs, moto:" in capsys.readouterr().out
