"""The bench's ``wds-pipe`` and ``wds-node`` methods (this package's whole reading, under DataLoader workers and
under torchdata.nodes' Loader), alone and over a ``--mix`` of the bench's shards."""
import json

import pytest

from torchdata_s3ext.tools.bench.ours import mix_parts, parse_mix
from torchdata_s3ext.tools.cli import main

TINY = ["--shards", "4", "--samples-per-shard", "3", "--size", "16", "--jobs", "2"]
QUICK = ["--batch-size", "2", "--batches", "6", "--window", "2", "--time-limit", "60", "--num-workers", "1"]


@pytest.mark.nodes
@pytest.mark.parametrize("mix", [[], ["--mix", "web:3", "books:1"]], ids=["one dataset", "a mix"])
def test_bench_times_wds_pipe_and_wds_node_beside_a_backend(tmp_path, capsys, mix):
    dataset, out = tmp_path / "data", tmp_path / "results"
    main(["make-dataset", str(dataset), *TINY, "--no-progress"])
    methods = ["wds-pipe", "wds-node", "boto3"]
    code = main(["bench", str(dataset), "--server", "moto", "--methods", *methods, *QUICK, "--decode", "pil", *mix,
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().out
    rows = json.loads((out / "results.json").read_text())["results"]
    assert [row["method"] for row in rows] == methods
    for row in rows:
        assert row["status"] == "ok", row
        assert row["batches"] == 6 and row["samples"] == 12 and row["samples_per_s"] > 0
    # one pass over the 4 shards: a GET each (the mix's datasets read every shard once too)
    assert [row["requests_per_epoch"] for row in rows] == [4, 4, 4]


def test_mix_parts_cut_the_shards_in_order_and_parse_mix_checks_each_item():
    assert mix_parts(["a", "b", "c", "d", "e"], parse_mix(["x:1", "y:2"])) == {"x": ["a", "b"], "y": ["c", "d", "e"]}
    assert parse_mix(["web:3", "books:0.5"]) == (("web", 3.0), ("books", 0.5))
    with pytest.raises(ValueError, match="fewer|but the bench has 1 shards"):
        mix_parts(["a"], parse_mix(["x:1", "y:1"]))


@pytest.mark.parametrize("items, message", [
    (["web:0"], "positive weight .* got 'web:0'"),
    (["web"], "NAME:WEIGHT .* got 'web'"),
    (["web:x"], "got 'web:x'"),
    (["web:1", "web:2"], "--mix names 'web' twice"),
])
def test_a_bad_mix_is_one_line_before_anything_runs(tmp_path, items, message):
    with pytest.raises(SystemExit, match=message):
        main(["bench", str(tmp_path), "--methods", "wds-pipe", "--mix", *items])
