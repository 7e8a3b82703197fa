"""Third-party private parts are checked before use: a release that lacks one gets an error naming the
library, its version and the versions known to work; a botocore body of an unknown shape is read publicly."""
import io

import pytest
import torch

from torchdata_s3ext import compat


def test_iopath_without_its_private_client_hook_is_named_with_the_versions_known_to_work(monkeypatch):
    from iopath.common.s3 import S3PathHandler

    monkeypatch.delattr(S3PathHandler, "_get_client")
    with pytest.raises(compat.IncompatibleLibrary, match=r"iopath's S3PathHandler._get_client.*iopath>=0\.1\.10,<0\.2"):
        compat.iopath_handler_with_client(lambda: None)


def test_iopath_handler_hands_iopath_our_client():
    client = object()
    assert compat.iopath_handler_with_client(lambda: client)._get_client("bucket") is client


def test_iopath_reader_without_its_ranged_read_is_named():
    with pytest.raises(compat.IncompatibleLibrary, match="S3ChunkReadIO._read_from_s3"):
        compat.iopath_read_range(io.BytesIO(b"abc"), 0, 2)


def test_iopath_ranged_read_asks_for_the_inclusive_range_iopath_expects():
    class Reader:
        def _read_from_s3(self, download_range):
            return download_range

    assert compat.iopath_read_range(Reader(), 10, 20) == range(10, 19)


def test_s3torchconnector_without_its_part_stream_is_named(monkeypatch):
    pytest.importorskip("s3torchconnector")
    from s3torchconnector._s3client import S3Client

    monkeypatch.delattr(S3Client, "_get_object_stream")
    with pytest.raises(compat.IncompatibleLibrary, match=r"S3Client._get_object_stream.*s3torchconnector>=1\.2,<2"):
        compat.crt_s3_client_class()


def test_a_body_of_an_unknown_shape_has_no_http_response_so_it_is_read_publicly():
    assert compat.http_response_of(io.BytesIO(b"abc")) is None


class _Counting(torch.utils.data.IterableDataset):
    """Counts to four, with a state StatefulDataLoader keeps in its workers' snapshots."""

    def __init__(self) -> None:
        self.count = 0

    def __iter__(self):
        while self.count < 4:
            self.count += 1
            yield self.count

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


def test_a_stateful_dataloader_state_is_read_through_its_private_keys():
    from torchdata.stateful_dataloader import StatefulDataLoader

    loader = StatefulDataLoader(_Counting(), batch_size=None, num_workers=2)
    batches = iter(loader)
    next(batches)
    snapshot = compat.stateful_loader_snapshot(loader.state_dict())
    assert len(snapshot.workers) == 2 and all("dataset_state" in worker for worker in snapshot.workers)
    assert not snapshot.lagging and not snapshot.epoch_ended
    assert sorted(batches) == [1, 2, 2, 3, 3, 4, 4]
    assert compat.stateful_loader_snapshot(loader.state_dict()).epoch_ended
    assert compat.stateful_loader_epoch_ended(loader.state_dict())
    assert compat.stateful_loader_snapshot({"format": "ours"}) is None


def test_a_stateful_dataloader_without_its_state_keys_is_named_with_the_versions_known_to_work(monkeypatch):
    from torchdata.stateful_dataloader import stateful_dataloader

    monkeypatch.delattr(stateful_dataloader._StatefulMultiProcessingDataLoaderIter, "_WORKER_SNAPSHOTS")
    with pytest.raises(compat.IncompatibleLibrary, match=r"StatefulDataLoader's state keys.*checked on 0\.9\.0 and 0\.11\.0"):
        compat.stateful_loader_snapshot({"_snapshot": {}})
