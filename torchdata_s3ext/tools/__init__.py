"""The ``torchdata-s3ext`` command's tools: the dataset generator, the throughput benchmark and the CLI.

Built on the library and on :mod:`torchdata_s3ext.testing`; the library never imports this package.
"""
