"""Unit-testing your own pipe against a real (local) S3 endpoint with the fixtures torchdata-s3ext installs.

Run: ``pytest examples/test_my_pipeline.py`` — no setup: the ``s3_server``, ``s3_bucket`` and ``wds_shards``
fixtures come from the package's pytest plugin.
"""
from torchdata.datapipes.iter import IterableWrapper

import torchdata_s3ext  # noqa: F401


def my_pipeline(urls):
    return IterableWrapper(urls).open_s3().load_from_tar().group_wds_samples().decode_png_pair()


def test_my_pipeline_yields_every_sample_with_its_label(wds_shards):
    shards = wds_shards(num_shards=2, samples_per_shard=3, image_size=8)
    samples = list(my_pipeline(shards.urls))
    assert [sample["__key__"] for sample in samples] == shards.keys
    assert all(sample["image"].shape == (3, 8, 8) and sample["label"].shape == (8, 8) for sample in samples)
