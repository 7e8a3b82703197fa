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
