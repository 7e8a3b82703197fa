"""The checkpoint-cost measurement runs end to end on a few linked shards and reports every figure."""
import json

from torchdata_s3ext.tools.bench.checkpoint_costs import main, make_shards


def test_shards_are_links_to_one_tar(tmp_path):
    urls = make_shards(str(tmp_path), 5, samples=2)
    assert len(set(urls)) == 5
    assert len({(tmp_path / url).resolve() for url in urls}) == 1


def test_every_figure_is_reported(tmp_path, capsys):
    code = main(["--shards", "8", "16", "--samples", "2", "--buffer", "4", "--readers", "4", "--state-readers", "2", "--merged-shards", "16",
                 "--epoch-shards", "8", "--epoch-samples", "2", "--workers", "1", "--runs", "1", "--folder", str(tmp_path)])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    states, merged, epochs = rows[:2], rows[2], rows[3]
    assert [row["shards"] for row in states] == [8, 16]
    assert all(row["state_dict_us"] > 0 and row["state_bytes"] > 100 for row in states)
    assert merged["readers"] == 4 and merged["merged_bytes"] > 100
    assert epochs["DataLoader_s"] > 0 and epochs["StatefulDataLoader_s"] > 0 and epochs["ratio"] > 0
    assert epochs["samples_per_shard"] == 2
