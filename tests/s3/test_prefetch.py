"""Next-shard prefetch in ``open_s3``: the same samples, the next shard's GETs on the wire before the last one
ends, its errors at its shard, and nothing left open or running when the pipe stops early."""
import threading
import time

import pytest
from torch.utils.data.datapipes.iter import IterableWrapper

from torchdata_s3ext import wds_pipe
from torchdata_s3ext.s3.stats import process_stats
from torchdata_s3ext.samples import opener
from torchdata_s3ext.s3.settings import OpenSettings
from torchdata_s3ext.samples.opener import ShardOpener
from torchdata_s3ext.samples.positions import ShardSlice
from torchdata_s3ext.stage import IterableStage, Stage
from torchdata_s3ext.testing import seed_samples, tar_bytes

PART = 1024


def _opener(urls, prefetch=True, **options):
    return IterableWrapper(list(urls)).open_s3(backend="auto", part_size=PART, concurrency=2, prefetch=prefetch, **options)


def _wait_until(condition, timeout=20.0) -> bool:
    """Poll ``condition`` until true (a bound on waiting for a thread, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _prefetch_threads():
    return [thread for thread in threading.enumerate() if thread.name.startswith(("s3-prefetch", "s3-part"))]


def test_prefetched_and_not_give_the_same_samples_from_s3_and_pipe_urls(wds_shards, tmp_path):
    shards = wds_shards(num_shards=4, samples_per_shard=3, image_size=16)
    local = tmp_path / "extra.tar"
    local.write_bytes(tar_bytes(seed_samples(2, image_size=8, first_index=100)))
    urls = shards.urls[:2] + [f"pipe:cat {local}"] + shards.urls[2:]
    runs = [list(wds_pipe(urls, decode=False, shuffle=False, prefetch=prefetch, part_size=PART)) for prefetch in (True, False)]
    assert runs[0] == runs[1]
    assert len(runs[0]) == 4 * 3 + 2


def test_byte_ranges_read_the_same_with_and_without_prefetch(wds_shards):
    shards = wds_shards(num_shards=3, samples_per_shard=3, image_size=16)
    slices = [ShardSlice(url, start=512 * index, end=512 * index + 3000) for index, url in enumerate(shards.urls)]
    reads = []
    for prefetch in (True, False):
        pairs = list(_opener(slices, prefetch))
        reads.append([stream.read() for _, stream in pairs])
        for _, stream in pairs:
            stream.close()
    assert reads[0] == reads[1]
    assert [len(data) for data in reads[0]] == [3000] * 3


def _first_shard_all_but_last_byte(pipe):
    """The pipe's iterator, its first stream, and the GETs sent once all of that stream but its last byte is read."""
    before = process_stats().gets
    shards = iter(pipe)
    url, stream = next(shards)
    size = stream.size
    stream.read(size - 1)  # every part of it has arrived: its GETs are all counted
    return shards, stream, size, before


def test_the_next_shards_gets_start_before_the_last_shard_is_exhausted(wds_shards):
    shards = wds_shards(num_shards=2, samples_per_shard=3, image_size=16)
    iterator, stream, size, before = _first_shard_all_but_last_byte(_opener(shards.urls))
    parts = -(-size // PART)
    assert _wait_until(lambda: process_stats().gets - before > parts)  # the next shard's first GET
    assert stream.read() != b""  # while this one still had a byte to give
    stream.close()
    iterator.close()


def test_without_prefetch_the_next_shard_waits_for_its_turn(wds_shards):
    shards = wds_shards(num_shards=2, samples_per_shard=3, image_size=16)
    iterator, stream, size, before = _first_shard_all_but_last_byte(_opener(shards.urls, prefetch=False))
    assert process_stats().gets - before == -(-size // PART)
    stream.close()
    iterator.close()


def test_an_error_opening_the_next_shard_is_raised_at_that_shard_naming_its_url(wds_shards, s3_bucket):
    shards = wds_shards(num_shards=2, samples_per_shard=3, image_size=16)
    missing = f"s3://{s3_bucket}/train/missing-shard.tar"
    iterator = iter(_opener([shards.urls[0], missing, shards.urls[1]]))
    url, stream = next(iterator)
    assert url == shards.urls[0] and len(stream.read()) == stream.size  # its open ahead fails meanwhile, unseen
    stream.close()
    with pytest.raises(FileNotFoundError, match="missing-shard.tar"):
        next(iterator)


def test_closing_early_closes_the_stream_opened_ahead_and_leaves_no_thread(wds_shards, monkeypatch):
    shards = wds_shards(num_shards=3, samples_per_shard=3, image_size=16)
    opened = []
    open_shard = opener.open_shard
    monkeypatch.setattr(opener, "open_shard",
                        lambda url, settings, **byte_range: opened.append(open_shard(url, settings, **byte_range)) or opened[-1])
    baseline = len(_prefetch_threads())
    for _ in range(3):  # the same every time: nothing piles up
        iterator = iter(_opener(shards.urls))
        _, stream = next(iterator)
        stream.read()
        assert _wait_until(lambda: len(opened) % 3 == 2)  # the second shard opened ahead
        iterator.close()
        stream.close()
        assert opened[-1].closed  # never handed out: closed by the pipe
        assert _wait_until(lambda: len(_prefetch_threads()) <= baseline), _prefetch_threads()
        opened.clear()


class _Opened:
    """What a stand-in ``open_shard`` gives: no parts fetched ahead, so the next shard is opened at once."""

    def __init__(self, name: str) -> None:
        self.name = name

    def close(self) -> None:
        pass


def _stand_in_open(url, settings, start=0, end=None):
    if url.endswith("bad.tar"):
        raise OSError(f"{url}: no")
    return _Opened(url)


def test_the_opener_raises_the_error_of_the_opening_ahead_only_when_its_shard_is_reached(monkeypatch):
    monkeypatch.setattr(opener, "open_shard", _stand_in_open)
    stage = ShardOpener(IterableStage(["s3://b/first.tar", "s3://b/bad.tar", "s3://b/never.tar"]), OpenSettings())
    stage.reset()
    assert stage.next().stream.name == "s3://b/first.tar"
    with pytest.raises(OSError, match="bad.tar"):
        stage.next()
    stage.close()


class _FailingSource(Stage):
    """Gives one shard URL, then fails."""

    def reset(self, state=None):
        self._given = 0

    def next(self):
        self._given += 1
        if self._given > 1:
            raise ValueError("the shard list ended badly")
        return "s3://b/first.tar"

    def state(self):
        return {"given": self._given}


def test_the_opener_hands_out_the_shard_before_a_failure_of_its_source(monkeypatch):
    monkeypatch.setattr(opener, "open_shard", _stand_in_open)
    stage = ShardOpener(_FailingSource(), OpenSettings())
    stage.reset()
    assert stage.next().stream.name == "s3://b/first.tar"
    with pytest.raises(ValueError, match="ended badly"):
        stage.next()
    stage.close()
