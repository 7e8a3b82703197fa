"""A shard's last complete sample comes out before the next shard's error: under ``on_error="raise"``, a missing
next shard (404 on the local server), opened ahead or not, costs no sample of the shard before it."""
from typing import List

import pytest
from torch.utils.data.datapipes.iter import IterableWrapper

import torchdata_s3ext

pytestmark = pytest.mark.timeout(60)

CHAINS = ["wds_pipe", "load_wds_shards", "load_from_tar"]


def chain(kind: str, urls: List[str], prefetch: bool):
    if kind == "wds_pipe":
        return torchdata_s3ext.wds_pipe(urls, shuffle=False, decode=False, on_error="raise", prefetch=prefetch)
    opened = IterableWrapper(urls).open_s3(prefetch=prefetch)
    if kind == "load_wds_shards":
        return opened.load_wds_shards(on_error="raise")
    return opened.load_from_tar().group_wds_samples(on_error="raise")


@pytest.mark.parametrize("prefetch", [True, False], ids=["prefetch", "no-prefetch"])
@pytest.mark.parametrize("kind", CHAINS)
def test_the_last_sample_of_a_shard_comes_before_the_missing_next_shards_error(wds_shards, s3_bucket, kind, prefetch):
    shards = wds_shards(num_shards=1, samples_per_shard=5)
    missing = f"s3://{s3_bucket}/train/shard-000001.tar"
    keys: List[str] = []
    with pytest.raises(FileNotFoundError) as raised:
        keys.extend(sample["__key__"] for sample in chain(kind, shards.urls + [missing], prefetch))
    assert keys == shards.keys_by_url[shards.urls[0]] and len(keys) == 5
    assert missing in str(raised.value)


@pytest.mark.parametrize("prefetch", [True, False], ids=["prefetch", "no-prefetch"])
@pytest.mark.parametrize("kind", CHAINS)
def test_the_shards_after_a_missing_one_are_not_read_under_raise(wds_shards, s3_bucket, kind, prefetch):
    """The error ends the epoch where the missing shard stands: the shard after it gives nothing."""
    shards = wds_shards(num_shards=2, samples_per_shard=5)
    missing = f"s3://{s3_bucket}/train/missing.tar"
    keys: List[str] = []
    with pytest.raises(FileNotFoundError):
        keys.extend(sample["__key__"] for sample in chain(kind, [shards.urls[0], missing, shards.urls[1]], prefetch))
    assert keys == shards.keys_by_url[shards.urls[0]]
