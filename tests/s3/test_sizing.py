"""Parts sized to the link within a memory budget (``s3/io/sizing.py``): the policy's decisions, and readers
through a slow proxy that never hold more part memory than the budget and always return the object's bytes."""
import concurrent.futures
import itertools
import threading

import hypothesis
import pytest
from hypothesis import strategies as st

from torchdata_s3ext import S3Config
from torchdata_s3ext.s3.backends import _boto3
from torchdata_s3ext.s3.io import link_sizing, parts, sizing
from torchdata_s3ext.s3.io.link_sizing import PartSizing, sizing_for
from torchdata_s3ext.s3.io.sizing import Evidence, first_part_size, is_better, most_in_flight, smaller_part_size
from torchdata_s3ext.s3.settings import OpenSettings
from torchdata_s3ext.testing import FaultPlan, S3Proxy

MiB = 1 << 20
KiB = 1 << 10
S3_LINK = dict(latency_s=0.030, rate=90e6)  # real S3, per connection
LOOPBACK = dict(latency_s=0.0005, rate=400e6)


@pytest.fixture
def endpoints(monkeypatch):
    """What the process learned per endpoint, empty for the test."""
    fresh = link_sizing._Endpoints()
    monkeypatch.setattr(link_sizing, "_ENDPOINTS", fresh)
    return fresh


@pytest.fixture
def small_parts(monkeypatch, endpoints):
    """Parts down to 64 KiB, so that budgets of a few MiB hold many; empty spare buffers and learned state."""
    monkeypatch.setattr(sizing, "MIN_PART_SIZE", 64 * KiB)
    monkeypatch.setattr(parts, "_SPARE", parts.SpareBuffers())


def test_the_default_budget_is_todays_sixteen_mib_parts_six_in_flight(endpoints):
    fresh = sizing_for("boto3 http://a")
    assert (fresh.part_size, fresh.in_flight, fresh.most_in_flight, fresh.memory_budget) == (16 * MiB, 6, 6, 112 * MiB)
    assert fresh.adaptive


def test_a_smaller_budget_starts_with_smaller_parts_not_below_the_floor():
    assert [first_part_size(budget * MiB) // MiB for budget in (112, 64, 32, 20, 8)] == [16, 8, 4, 4, 4]
    assert most_in_flight(8 * MiB, 4 * MiB) == 1
    assert most_in_flight(1 << 30, 4 * MiB) == sizing.MOST_IN_FLIGHT  # the client's connections bound it too


def test_a_far_link_gets_parts_half_as_large_while_that_pays():
    assert smaller_part_size(112 * MiB, 16 * MiB, **S3_LINK) == 8 * MiB
    # at 8 MiB the budget allows more parts than one stream may have in flight: smaller would not deliver more
    assert smaller_part_size(112 * MiB, 8 * MiB, **S3_LINK) is None
    assert smaller_part_size(40 * MiB, 8 * MiB, **S3_LINK) == 4 * MiB
    assert smaller_part_size(40 * MiB, 4 * MiB, **S3_LINK) is None  # the floor
    # slow connections whose first byte is a small share of a part's time: more of them still add up
    assert smaller_part_size(112 * MiB, 16 * MiB, latency_s=0.030, rate=20e6) == 8 * MiB


def test_a_near_link_keeps_its_part_size():
    assert smaller_part_size(112 * MiB, 16 * MiB, **LOOPBACK) is None
    assert smaller_part_size(40 * MiB, 8 * MiB, **LOOPBACK) is None
    # a busy client's answer heads are slow to come in (the GIL), but its connections are fast: near all the same
    assert smaller_part_size(112 * MiB, 16 * MiB, latency_s=0.030, rate=500e6) is None


def test_parts_never_shrink_below_what_one_connection_receives_in_one_latency():
    assert smaller_part_size(112 * MiB, 16 * MiB, latency_s=0.2, rate=90e6) is None  # 18 MB per latency


def stream_saw(endpoint, budget, latency_s, rate, read_seconds=1.5, wait_seconds=0.5, parts_read=4, finish=True):
    """A stream of the endpoint that timed its parts on a link of that latency and rate, read ``parts_read``
    of them in ``read_seconds``, waiting ``wait_seconds`` of it, then finished (closed)."""
    stream = PartSizing.for_endpoint(endpoint, budget)
    for _ in range(parts_read):
        stream.first_byte(latency_s)
        stream.timed(stream.part_size, latency_s + stream.part_size / rate)
    stream._add(Evidence(read_seconds=read_seconds, read_bytes=parts_read * stream.part_size, wait_seconds=wait_seconds))
    if finish:
        stream.finished()
    return stream


def part_arriving_in(seconds):
    part = concurrent.futures.Future()
    threading.Timer(seconds, part.set_result, [b"part"]).start()
    return part


def test_waits_put_more_in_flight_up_to_the_budget_and_the_next_stream_starts_there(endpoints):
    stream = PartSizing.for_endpoint("boto3 http://far", 224 * MiB)
    assert (stream.part_size, stream.in_flight, stream.most_in_flight) == (16 * MiB, 6, 13)
    stream.wait_for(part_arriving_in(0.002), steady=False)  # the first part: every reader waits for it
    assert stream.in_flight == 6
    for _ in range(10):
        stream.wait_for(part_arriving_in(0.002))
    assert stream.in_flight == 13  # (13 + 1) x 16 MiB = the budget
    assert stream.evidence.wait_seconds > 0 and stream.evidence.read_bytes == 10 * 16 * MiB
    assert (PartSizing.for_endpoint("boto3 http://far", 224 * MiB).in_flight) == 13
    assert PartSizing.for_endpoint("boto3 http://other", 224 * MiB).in_flight == 6  # per endpoint
    assert PartSizing.for_endpoint("boto3 http://far", 112 * MiB).in_flight == 6  # and per budget


def test_reads_held_back_with_the_budget_full_on_a_far_link_halve_the_next_streams_parts(endpoints):
    stream = stream_saw("boto3 http://far", 112 * MiB, **S3_LINK)
    assert (stream.part_size, stream.in_flight) == (16 * MiB, 6)  # a stream keeps its part size
    after = PartSizing.for_endpoint("boto3 http://far", 112 * MiB)
    assert (after.part_size, after.in_flight, after.most_in_flight) == (8 * MiB, 13, 13)  # as many bytes in flight
    assert endpoints.learned["boto3 http://far"].trial_of == (16 * MiB, 6, 1.5 / (4 * 16 * MiB))


def test_the_part_size_is_decided_on_enough_reading_added_up_over_streams(endpoints):
    stream_saw("boto3 http://far", 112 * MiB, **S3_LINK, read_seconds=0.3, wait_seconds=0.1)
    assert PartSizing.for_endpoint("boto3 http://far", 112 * MiB).part_size == 16 * MiB  # a look too short
    stream_saw("boto3 http://far", 112 * MiB, **S3_LINK, read_seconds=0.3, wait_seconds=0.1)
    assert PartSizing.for_endpoint("boto3 http://far", 112 * MiB).part_size == 8 * MiB


def on_trial(endpoints, seconds_then, seconds_now):
    """Streams of 16 MiB parts read in ``seconds_then`` that put 8 MiB parts on trial, then streams of those
    reading as many bytes in ``seconds_now``: what the endpoint learned."""
    stream_saw("boto3 http://far", 112 * MiB, **S3_LINK, read_seconds=seconds_then, wait_seconds=seconds_then / 2)
    stream_saw("boto3 http://far", 112 * MiB, **S3_LINK, read_seconds=seconds_now, wait_seconds=0.1, parts_read=8)
    return endpoints.learned["boto3 http://far"]


def test_smaller_parts_on_trial_are_kept_when_their_streams_were_read_faster(endpoints):
    learned = on_trial(endpoints, 2.0, 1.5)
    assert (learned.part_size, learned.trial_of, learned.settled) == (8 * MiB, None, False)
    assert is_better(1e-9, 2e-9) and not is_better(1.9e-9, 2e-9)


def test_smaller_parts_that_did_not_do_better_give_way_to_the_larger_ones_for_good(endpoints):
    learned = on_trial(endpoints, 2.0, 1.9)
    assert (learned.part_size, learned.in_flight, learned.settled) == (16 * MiB, 6, True)
    stream_saw("boto3 http://far", 112 * MiB, **S3_LINK)
    assert PartSizing.for_endpoint("boto3 http://far", 112 * MiB).part_size == 16 * MiB  # not tried again


def test_a_stream_of_older_parts_has_no_say_once_smaller_ones_are_on_trial(endpoints):
    older = stream_saw("boto3 http://far", 112 * MiB, **S3_LINK, finish=False)
    older.in_flight = 5
    stream_saw("boto3 http://far", 112 * MiB, **S3_LINK)
    trial = endpoints.learned["boto3 http://far"]
    assert trial.part_size == 8 * MiB and trial.trial_of is not None
    older.wait_for(part_arriving_in(0), steady=False)
    older.wait_for(part_arriving_in(0.002))
    assert older.in_flight == 6  # grows its own window...
    older.finished()
    assert endpoints.learned["boto3 http://far"] == trial  # ... but the endpoint stays on trial


def test_a_reader_that_seldom_waits_keeps_the_part_size_even_on_a_far_link(endpoints):
    stream_saw("boto3 http://far", 112 * MiB, **S3_LINK, read_seconds=10.0, wait_seconds=0.1)
    assert PartSizing.for_endpoint("boto3 http://far", 112 * MiB).part_size == 16 * MiB


def test_reads_held_back_on_a_near_link_keep_the_part_size(endpoints):
    stream_saw("boto3 http://near", 112 * MiB, **LOOPBACK)
    assert PartSizing.for_endpoint("boto3 http://near", 112 * MiB).part_size == 16 * MiB


def test_explicit_part_size_or_concurrency_is_never_adapted(endpoints):
    for fixed in (sizing_for("boto3 http://far", part_size=MiB), sizing_for("boto3 http://far", concurrency=3)):
        before = (fixed.part_size, fixed.in_flight, fixed.most_in_flight)
        for _ in range(5):
            fixed.first_byte(0.03)
            fixed.timed(fixed.part_size, 1.0)
            fixed.wait_for(part_arriving_in(0.002))
        fixed.finished()
        assert (fixed.part_size, fixed.in_flight, fixed.most_in_flight) == before and not fixed.adaptive
    assert (before[0], before[1]) == (16 * MiB, 3)
    assert endpoints.learned == {}


@pytest.mark.parametrize("options, message", [
    ({"memory_budget": 4 * MiB}, "memory_budget must be a number of bytes that holds two parts of 4194304 bytes"),
    ({"memory_budget": 1.5e8}, "memory_budget must be a number of bytes"),
    ({"memory_budget": 64 * MiB, "part_size": MiB}, "give memory_budget .* or part_size/concurrency .*, not both"),
    ({"memory_budget": 64 * MiB, "concurrency": 2}, "not both"),
    ({"part_size": 0}, "part_size must be a positive whole number, got 0"),
    ({"concurrency": 2.5}, "concurrency must be a positive whole number, got 2.5"),
])
@pytest.mark.parametrize("backend", ["auto", "boto3", "fsspec", "iopath"])
def test_sizing_options_are_checked_where_they_are_given(backend, options, message):
    with pytest.raises(ValueError, match=message):
        OpenSettings.from_keywords(backend, **options)


def test_memory_budget_is_an_option_of_the_ranged_backends_only():
    assert OpenSettings.from_keywords("auto", memory_budget=64 * MiB).options == {"memory_budget": 64 * MiB}
    with pytest.raises(TypeError, match="memory_budget"):
        OpenSettings.from_keywords("awscli", memory_budget=64 * MiB)


def object_bytes(size):
    return bytes((i * 29 + i // 251) % 256 for i in range(size))


def read_checking_the_budget(url, config, read_sizes, **options):
    """The stream's bytes, read in ``read_sizes`` cycled; after every read, the part memory its pool lent is
    within the budget and no more parts are in flight than the sizing allows. Returns (bytes, sizing)."""
    stream = _boto3.open_url(url, config, **options)
    pool, stream_sizing = stream._parts, stream._sizing
    chunks = []
    try:
        for read_size in itertools.cycle(read_sizes):
            chunk = stream.read(read_size)
            assert pool.lent_bytes <= stream_sizing.memory_budget
            assert len(stream._window) <= stream_sizing.in_flight <= stream_sizing.most_in_flight
            assert pool.part_size == stream_sizing.part_size
            if not chunk:
                return b"".join(chunks), stream_sizing
            chunks.append(chunk)
    finally:
        stream.close()


@hypothesis.settings(max_examples=8, deadline=None, suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(
    latency_ms=st.sampled_from([0, 5, 20]), rate_mb=st.sampled_from([4, 16, 64]),
    budget_kib=st.sampled_from([512, 1024, 3072]), read_sizes=st.lists(st.integers(1, 200 * KiB), min_size=1, max_size=4),
)
def test_readers_through_any_link_stay_within_the_budget_and_byte_exact(
    latency_ms, rate_mb, budget_kib, read_sizes, small_parts, put, s3_server,
):
    data = object_bytes(3 * MiB + 12_345)
    urls = [put(data, key=f"sized-{number}.bin") for number in range(3)]
    plan = FaultPlan(bandwidth_bytes_per_s=rate_mb * 1e6, first_byte_latency_s=latency_ms / 1000, fault_kinds=("GET",))
    with S3Proxy(s3_server.endpoint_url, plan) as link:
        config = S3Config(endpoint_url=link.endpoint_url).resolved()
        for url in urls:  # one after the other: each starts where the last one got to
            read, _ = read_checking_the_budget(url, config, read_sizes, memory_budget=budget_kib * KiB)
            assert read == data


def test_a_reader_that_waits_puts_more_in_flight_and_the_next_stream_starts_there(small_parts, put, s3_server):
    data = object_bytes(2 * MiB)
    url = put(data)
    plan = FaultPlan(bandwidth_bytes_per_s=8e6, first_byte_latency_s=0.01, fault_kinds=("GET",))
    with S3Proxy(s3_server.endpoint_url, plan) as link:
        config = S3Config(endpoint_url=link.endpoint_url).resolved()
        first = PartSizing.for_endpoint(f"boto3 {link.endpoint_url}", 4 * MiB)
        assert (first.part_size, first.in_flight) == (512 * KiB, 6)
        read, stream_sizing = read_checking_the_budget(url, config, [64 * KiB], memory_budget=4 * MiB)
        assert read == data
        assert stream_sizing.in_flight == 7  # 8 parts of 512 KiB in 4 MiB: waited for (a link slower than memory)
        learned = PartSizing.for_endpoint(f"boto3 {link.endpoint_url}", 4 * MiB)
        assert (learned.part_size * (learned.in_flight + 1)) == 4 * MiB  # as many bytes in flight, maybe smaller parts


def test_explicit_part_size_and_concurrency_stay_fixed_through_a_slow_link(small_parts, put, s3_server, endpoints):
    data = object_bytes(MiB + 5)
    url = put(data)
    plan = FaultPlan(bandwidth_bytes_per_s=8e6, first_byte_latency_s=0.01, fault_kinds=("GET",))
    with S3Proxy(s3_server.endpoint_url, plan) as link:
        config = S3Config(endpoint_url=link.endpoint_url).resolved()
        read, stream_sizing = read_checking_the_budget(url, config, [100 * KiB], part_size=128 * KiB, concurrency=2)
    assert read == data
    assert (stream_sizing.part_size, stream_sizing.in_flight, stream_sizing.most_in_flight) == (128 * KiB, 2, 2)
    assert endpoints.learned == {}


def test_a_stream_of_another_part_size_lets_the_spare_buffers_of_the_old_size_go():
    spare = parts.SpareBuffers()
    for _ in range(3):
        spare.give(bytearray(1000), 3)
    assert len(spare.take(500)) == 500
    assert spare._buffers == []  # not kept beside the new stream's buffers
    spare.give(bytearray(500), 3)
    assert len(spare.take(500)) == 500 and spare._buffers == []
