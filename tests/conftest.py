"""Our tests use the same pytest plugin users get (fixtures s3_server, s3_bucket, wds_shards)."""
