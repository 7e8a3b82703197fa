"""The client room: an :class:`~torchdata_s3ext.S3Config` made into clients (:mod:`.clients`, one per process:
:mod:`.process`; credentials for the clients that read the environment: :mod:`.credentials`), what a client's
error means (:mod:`.errors`, botocore's classifier in :mod:`.botocore_errors`), the one retry loop
(:mod:`.retry`), an object's HEAD and the checks of its bytes (:mod:`.objects`), one version per stream
(:mod:`.pins`). Nothing here reads a stream or knows a backend."""
