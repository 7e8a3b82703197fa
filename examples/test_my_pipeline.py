"""Unit-testing your own pipe against a real (local) S3 endpoint with the fixtures torchdata-s3ext installs.

Run: ``pytest examples/test_my_pipeline.py`` — no setup: the ``s3_server``, ``s3_bucket`` and ``wds_shards``
fixtures come from the package's pytest plugin. README.md shows this file from its first import on, and
``tests/test_readme.py`` checks that it does.
"""
from torchdata_s3ext import wds_pipe


def my_pipeline(shards, **options):
    return wds_pipe(shards, shuffle_buffer=100, **options)


def test_my_pipeline_yields_every_sample_once_with_its_label(wds_shards):
    shards = wds_shards(num_shards=2, samples_per_shard=3, image_size=8)
    samples = list(my_pipeline(shards.urls))
    # wds_pipe shuffles shards and samples: compare the keys sorted
    assert sorted(sample["__key__"] for sample in samples) == sorted(shards.keys)
    assert all(sample["image"].shape == (3, 8, 8) and sample["label"].shape == (8, 8) for sample in samples)


def test_my_pipeline_keeps_the_order_of_the_shards_without_shuffle(wds_shards):
    shards = wds_shards(num_shards=2, samples_per_shard=3, image_size=8)
    samples = list(my_pipeline(shards.urls, shuffle=False))
    assert [sample["__key__"] for sample in samples] == shards.keys
