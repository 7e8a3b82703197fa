"""Our tests use the same pytest plugin users get (fixtures s3_server, s3_bucket, wds_shards)."""
import os
from typing import Callable

import pytest


def _files_bytes(folder) -> int:
    """The bytes of the files under ``folder``; a file removed while it is counted (a cache evicting on another
    thread or process) counts nothing."""
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except FileNotFoundError:
                pass
    return total


@pytest.fixture
def files_bytes() -> Callable[[object], int]:
    """How many bytes the files under a folder take (for checks of the shard cache's limit)."""
    return _files_bytes


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "dataloader2: needs torchdata 0.9's DataLoader2 (skipped with torchdata 0.10 and later)")
    config.addinivalue_line("markers", "nodes: needs torchdata.nodes (torchdata 0.10 and later)")


def pytest_collection_modifyitems(config, items) -> None:
    import importlib.util

    from torchdata_s3ext.faces.dataloader2 import has_torchdata_datapipes

    skips = {
        "dataloader2": (not has_torchdata_datapipes(), "needs torchdata 0.9's DataLoader2"),
        "nodes": (importlib.util.find_spec("torchdata.nodes") is None, "needs torchdata.nodes (torchdata >= 0.10)"),
    }
    native_s3 = importlib.util.find_spec("torchdata._torchdata") is not None
    for item in items:
        for marker, (skip, reason) in skips.items():
            if skip and item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.skip(reason=reason))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if not native_s3 and params.get("backend") == "s3fileloader":
            item.add_marker(pytest.mark.skip(reason="the s3fileloader backend needs torchdata 0.9's native S3 extension"))
