"""The bench's ratios, table, comparisons and decode timing on synthetic results: no server, no clock."""
import pytest

from torchdata_s3ext.tools.bench.decoders import PIL_BASELINE, decode_rounds, decoder_rows
from torchdata_s3ext.tools.bench.report import comparison_lines, format_decoder_table, format_table, row_label, with_ratios


def _row(method, workers, rate, decoder="none", **extra):
    return {"method": method, "num_workers": workers, "decoder": decoder, "status": "ok", "samples_per_s": rate, **extra}


def _by_label(rows):
    return {row_label(row, True): row for row in rows}


def test_peer_ratio_divides_by_the_peer_at_the_same_workers_and_decoder():
    rows = _by_label(with_ratios([
        _row("fsspec", 0, 60.0), _row("torchdata-fsspec", 0, 40.0),
        _row("fsspec", 2, 90.0), _row("torchdata-fsspec", 2, 100.0),
        _row("boto3", 0, 30.0), _row("raw", 0, 120.0),
    ]))
    assert rows["fsspec (0 workers)"]["ratio_to_peer"] == pytest.approx(1.5)
    assert rows["fsspec (2 workers)"]["ratio_to_peer"] == pytest.approx(0.9)
    assert rows["fsspec (0 workers)"]["peer"] == "torchdata-fsspec"
    assert rows["boto3 (0 workers)"]["ratio_to_peer"] is None  # boto3-bytesio was not measured
    assert rows["torchdata-fsspec (0 workers)"]["ratio_to_peer"] is None  # a peer has no peer
    assert rows["boto3 (0 workers)"]["ratio_to_raw"] == pytest.approx(0.25)


def test_peer_ratio_needs_the_same_decoder():
    rows = with_ratios([_row("local", 0, 50.0, decoder="auto"), _row("torchdata-fileopener", 0, 25.0)])
    assert rows[0]["ratio_to_peer"] is None


def test_zero_workers_ratio_is_over_the_same_method_and_decoder_at_zero_workers():
    rows = _by_label(with_ratios([
        _row("boto3", 0, 40.0, decoder="auto"), _row("boto3", 2, 70.0, decoder="auto"), _row("fsspec", 2, 80.0),
        _row("raw", 0, 200.0),
    ]))
    assert rows["boto3 (0 workers)"]["ratio_to_zero_workers"] == pytest.approx(1.0)
    assert rows["boto3 (2 workers)"]["ratio_to_zero_workers"] == pytest.approx(1.75)
    assert rows["fsspec (2 workers)"]["ratio_to_zero_workers"] is None
    assert rows["raw"]["ratio_to_zero_workers"] is None


def test_failed_rows_get_no_ratios():
    rows = with_ratios([{"method": "fsspec", "num_workers": 0, "status": "error", "error": "boom"},
                        _row("torchdata-fsspec", 0, 40.0)])
    assert rows[0]["ratio_to_peer"] is None and rows[0]["ratio_to_zero_workers"] is None


def test_row_labels_name_the_worker_count_only_when_the_run_has_several():
    assert row_label(_row("boto3", 2, 1.0), True) == "boto3 (2 workers)"
    assert row_label(_row("boto3", 2, 1.0), False) == "boto3"
    assert row_label(_row("raw", 0, 1.0), True) == "raw"


def test_table_has_workers_and_shows_peer_and_worker_ratio_columns_only_when_measured():
    alone = format_table(with_ratios([_row("fsspec", 0, 60.0), _row("raw", 0, 120.0)])).splitlines()
    assert alone[0].split()[:3] == ["method", "workers", "samples/s"]
    assert "x peer" not in alone[0] and "x 0 workers" not in alone[0]
    both = format_table(with_ratios([_row("fsspec", 0, 60.0), _row("fsspec", 2, 90.0), _row("torchdata-fsspec", 0, 40.0)]))
    header = both.splitlines()[0]
    assert "x peer" in header and "x 0 workers" in header
    assert [line.split()[:2] for line in both.splitlines()[2:5]] == [["fsspec", "0"], ["fsspec", "2"], ["torchdata-fsspec", "0"]]
    assert "x peer: samples/s over the peer's" in both


def test_table_names_the_worker_count_of_a_failed_method_when_there_are_several():
    rows = with_ratios([_row("fsspec", 0, 60.0), {"method": "fsspec", "num_workers": 2, "status": "error", "error": "boom"}])
    assert "  fsspec (2 workers): boom" in format_table(rows).splitlines()


def test_comparison_lines_say_how_this_runs_methods_compare():
    rows = with_ratios([
        _row("boto3", 0, 90.0, decoder="auto", peak_rss_mb=280.0), _row("boto3", 2, 171.0, decoder="auto", peak_rss_mb=600.0),
        _row("boto3-bytesio", 0, 60.0, decoder="auto"), _row("raw", 0, 100.0),
    ])
    decoders = {"rows": [{"decoder": PIL_BASELINE, "ratio_to_pil": 1.0}, {"decoder": "auto", "ratio_to_pil": 1.52}]}
    lines = comparison_lines(rows, decoders)
    assert lines == [
        "open_s3 (auto = boto3), 0 workers, decode auto: 0.90x the samples/s of raw (one streamed GET per shard), "
        "peak RSS 280 MB",
        "open_s3 (auto = boto3), 2 workers, decode auto: 1.71x the samples/s of raw (one streamed GET per shard), "
        "peak RSS 600 MB",
        "decode_png_pair(decoder='auto'): 1.52x the pairs/s of plain PIL",
        "open_s3 (auto = boto3) with decode auto: 2 workers give 1.90x the samples/s of 0 workers",
        "boto3 (0 workers): 1.50x the samples/s of its peer boto3-bytesio",
    ]


def test_comparison_lines_through_an_s3like_link_name_the_link():
    rows = with_ratios([_row("boto3", 0, 63.0, peak_rss_mb=300.0), _row("raw", 0, 21.0)])
    assert comparison_lines(rows, link="s3like") == [
        "open_s3 (auto = boto3), 0 workers, decode none, through --link s3like: 3.00x the samples/s of raw "
        "(one streamed GET per shard), peak RSS 300 MB"
    ]


def test_comparison_lines_are_empty_when_nothing_comparable_was_measured():
    assert comparison_lines(with_ratios([_row("fsspec", 0, 1.0)]), None) == []


def test_decode_rounds_time_every_function_each_round_starting_one_later_each_time():
    calls = []
    functions = {name: (lambda sample, name=name: calls.append((name, sample))) for name in ("a", "b", "c")}
    rates = decode_rounds(["s1", "s2"], functions, rounds=3)
    assert [name for name, sample in calls if sample == "s1"] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert len(calls) == 18
    assert {name: len(values) for name, values in rates.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(rate > 0 for values in rates.values() for rate in values)


def test_decoder_rows_give_medians_over_rounds_and_ratios_to_the_pil_baseline():
    rows = decoder_rows({PIL_BASELINE: [50.0, 40.0, 60.0], "auto": [80.0, 200.0, 75.0]})
    assert [row["decoder"] for row in rows] == [PIL_BASELINE, "auto"]
    assert rows[0]["pairs_per_s"] == 50.0 and rows[0]["ratio_to_pil"] == 1.0
    assert rows[1]["pairs_per_s"] == 80.0 and rows[1]["ratio_to_pil"] == pytest.approx(1.6)
    assert rows[1]["rounds_pairs_per_s"] == [80.0, 200.0, 75.0]


def test_decoder_table_has_a_row_per_decoder_after_the_baseline_or_says_why_not():
    measured = {"samples": 8, "image_size": "1024x1024", "rounds": 5,
                "rows": decoder_rows({PIL_BASELINE: [50.0], "pil": [45.0], "auto": [80.0]})}
    lines = format_decoder_table(measured).splitlines()
    assert lines[0] == ("PNG decode: 8 image/label pairs of 1024x1024 from the first shard, in memory, one process; "
                        "median of 5 rounds")
    assert lines[1].split() == ["decoder", "pairs/s", "x", "pil"]
    assert [line.rsplit(None, 2)[0] for line in lines[3:]] == [PIL_BASELINE, "pil", "auto"]
    assert lines[-1].split()[-2:] == ["80.0", "1.60"]
    assert format_decoder_table({"error": "no pyspng"}) == "PNG decode not measured: no pyspng"
