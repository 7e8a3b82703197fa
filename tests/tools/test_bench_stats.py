"""The bench's statistics and bookkeeping on synthetic timings and tars: no server, no clock."""
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torchdata_s3ext.tools.bench.raw import TarSampleCounter
from torchdata_s3ext.tools.bench.report import format_table, with_ratios
from torchdata_s3ext.tools.bench.measure import payload_bytes
from torchdata_s3ext.tools.bench.stats import stall_fraction, window_durations, window_stats
from torchdata_s3ext.testing import seed_samples, tar_bytes


def test_window_durations_time_each_complete_window_from_the_start():
    stamps = [1.0, 2.0, 3.5, 4.0, 6.0, 7.0, 7.5]  # clock after iterations 1..7, started at 0
    assert window_durations(0.0, stamps, window=2) == [2.0, 2.0, 3.0]


def test_window_durations_drop_the_trailing_incomplete_window():
    assert window_durations(10.0, [11.0, 12.0, 13.0], window=5) == []


def test_window_durations_reject_an_empty_window():
    with pytest.raises(ValueError, match="window must be at least 1, got 0"):
        window_durations(0.0, [1.0], window=0)


def test_window_stats_leave_the_first_window_out_like_the_article():
    durations = [9.0, 1.0, 2.0, 3.0]
    stats = window_stats(durations, window=100)
    assert stats.mean == pytest.approx(2.0)
    assert stats.variance == pytest.approx(1.0)  # sample variance, as statistics.variance
    assert stats.durations == durations
    assert stats.iterations_per_second == pytest.approx(50.0)


def test_window_stats_need_two_kept_windows_for_a_variance_and_one_for_a_mean():
    assert window_stats([5.0, 2.0], window=10).variance is None
    assert window_stats([5.0, 2.0], window=10).mean == 2.0
    assert window_stats([5.0], window=10).mean is None


@given(st.lists(st.floats(min_value=0.001, max_value=100.0), min_size=3, max_size=50))
def test_window_stats_match_statistics_on_all_but_the_first(durations):
    stats = window_stats(durations, window=7)
    assert stats.mean == pytest.approx(statistics.mean(durations[1:]))
    assert stats.variance == pytest.approx(statistics.variance(durations[1:]))


def test_stall_fraction_is_the_share_of_the_streamed_step_spent_waiting():
    assert stall_fraction(0.1, 0.4) == pytest.approx(0.75)
    assert stall_fraction(0.5, 0.4) == 0.0  # noise can make the streamed step look faster
    assert stall_fraction(None, 0.4) is None
    assert stall_fraction(0.1, 0.0) is None


@given(st.integers(min_value=0, max_value=12), st.integers(min_value=1, max_value=5000), st.integers(min_value=1, max_value=3))
def test_tar_sample_counter_counts_samples_whatever_the_chunking(num_samples, chunk_size, copies):
    samples = list(seed_samples(num_samples, image_size=4))
    shard = tar_bytes(samples)
    counter = TarSampleCounter()
    stream = shard * copies  # consecutive shards, as the raw method reads them
    for start in range(0, len(stream), chunk_size):
        counter.feed(stream[start:start + chunk_size])
    assert counter.samples == num_samples * copies
    assert counter.payload_bytes == copies * sum(len(data) for _, fields in samples for data in fields.values())


def test_payload_bytes_sum_every_bytes_value_of_a_batch():
    batch = {"__key__": ["a", "b"], "image": [b"12345", b"123"], "label": [b"1", b"12"]}
    assert payload_bytes(batch) == 11


def test_table_has_a_row_per_method_with_ratios_to_raw():
    results = [
        {"method": "boto3", "status": "ok", "samples_per_s": 50.0},
        {"method": "raw", "status": "ok", "samples_per_s": 100.0},
        {"method": "s3torchconnector", "status": "unavailable", "error": "s3torchconnector is not installed"},
    ]
    rows = with_ratios(results)
    assert rows[0]["ratio_to_raw"] == pytest.approx(0.5)
    assert rows[2]["ratio_to_raw"] is None
    lines = format_table(rows).splitlines()
    assert lines[0].split()[:4] == ["method", "workers", "samples/s", "x"]
    assert [line.split()[0] for line in lines[2:5]] == ["boto3", "raw", "s3torchconnector"]
    assert "  s3torchconnector: s3torchconnector is not installed" in lines
