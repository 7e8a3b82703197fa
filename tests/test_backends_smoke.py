import pytest
from torchdata.datapipes.iter import IterableWrapper

import torchdata_s3ext  # noqa: F401

BACKENDS = ["boto3", "fsspec", "iopath", "s3fileloader", "awscli", "s3torchconnector"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_smoke(backend, wds_shards):
    shards = wds_shards(num_shards=2, samples_per_shard=3)
    dp = IterableWrapper(shards.urls).open_s3(backend=backend).load_from_tar()
    got = [(name.rsplit("/", 1)[1], stream.read()) for name, stream in dp]
    expected = [(f"{k}.{f}", shards.samples[k][f]) for k in shards.keys for f in ("image", "label")]
    assert got == expected
