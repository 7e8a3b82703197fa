"""``wds_pipe`` over a shard index: the index's shards in its order, no LIST request, ``len()`` the samples of
this rank's next epoch, and a shard rewritten since it was indexed an error naming it."""
import pytest

from torchdata_s3ext import list_shards, wds_pipe
from torchdata_s3ext.s3.stats import process_stats
from torchdata_s3ext.writing import ShardWriter

from writing_samples import as_written, mib_samples, without_url

SAMPLES = mib_samples(7)


@pytest.fixture
def written(s3_bucket):
    with ShardWriter(f"s3://{s3_bucket}/train/shard-%06d.tar", max_samples=2) as writer:
        for sample in SAMPLES:
            writer.write(sample)
    return writer


def test_an_index_lists_its_shards_without_a_list_request(written, s3_bucket):
    index = f"s3://{s3_bucket}/train/index.json"
    lists = process_stats().lists
    assert list_shards(index) == written.urls
    pipe = wds_pipe(index, decode=False, shuffle=False)
    assert process_stats().lists == lists
    assert without_url(pipe) == as_written(SAMPLES)


def test_len_of_a_pipe_over_an_index_is_the_samples_of_its_rank_s_next_epoch(written, s3_bucket):
    index = f"s3://{s3_bucket}/train/index.json"
    assert len(wds_pipe(index, decode=False)) == len(SAMPLES)
    for epoch_reads in (1, 2):
        per_rank = []
        for rank in range(3):
            pipe = wds_pipe(index, decode=False, seed=0, rank=rank, world_size=3)
            for _ in range(epoch_reads - 1):
                list(pipe)
            expected = len(pipe)
            per_rank.append(len(list(pipe)))
            assert per_rank[-1] == expected
        assert sum(per_rank) == len(SAMPLES)


def test_a_pipe_over_listed_shards_has_no_length(written, s3_bucket):
    with pytest.raises(TypeError, match="doesn't have valid length.*shard index"):
        len(wds_pipe(f"s3://{s3_bucket}/train/", decode=False))


def test_a_shard_rewritten_since_it_was_indexed_is_an_error_naming_it(written, s3_bucket, s3_client):
    index = f"s3://{s3_bucket}/train/index.json"
    s3_client.put_object(Bucket=s3_bucket, Key="train/shard-000001.tar", Body=b"\0" * 1024)
    with pytest.raises(OSError, match=r"the shard has 1024 bytes.*its shard index says") as raised:
        list(wds_pipe(index, decode=False, shuffle=False))
    assert raised.value.filename == f"s3://{s3_bucket}/train/shard-000001.tar"


def test_use_index_reads_the_index_in_a_prefix_and_lists_none(written, s3_bucket):
    lists = process_stats().lists
    pipe = wds_pipe(f"s3://{s3_bucket}/train/", use_index=True, decode=False, shuffle=False)
    assert process_stats().lists == lists and len(pipe) == len(SAMPLES)
    assert without_url(pipe) == as_written(SAMPLES)


def test_use_index_lists_a_prefix_without_one(written, s3_bucket, s3_client):
    s3_client.delete_object(Bucket=s3_bucket, Key="train/index.json")
    lists = process_stats().lists
    pipe = wds_pipe(f"s3://{s3_bucket}/train/", use_index=True, decode=False, shuffle=False)
    assert process_stats().lists == lists + 1
    assert without_url(pipe) == as_written(SAMPLES)
    with pytest.raises(TypeError, match="doesn't have valid length"):
        len(pipe)
