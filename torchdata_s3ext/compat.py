"""Every use of a third-party library's private parts, in one place, each checked before use.

We reach past five libraries' public API, each for a reason given below. A part that is gone raises
:class:`IncompatibleLibrary`, naming the library, the version installed and the versions we know to work,
instead of an ``AttributeError`` deep in a worker; where a public path exists (reading a botocore body), that
is the fallback. ``setup.cfg`` bounds these libraries to the versions listed here.
"""
import importlib.metadata
import importlib.util
from typing import Any, Callable, List, Mapping, NamedTuple, Optional

__all__ = [
    "IncompatibleLibrary",
    "crt_object_stream",
    "crt_s3_client_class",
    "http_response_of",
    "iopath_handler_with_client",
    "iopath_read_range",
    "LoaderSnapshot",
    "stateful_loader_epoch_ended",
    "stateful_loader_snapshot",
    "torchdata_native_s3_handler",
]

#: the versions each private part was checked against (and setup.cfg's bounds)
KNOWN_TO_WORK = {
    "iopath": ">=0.1.10,<0.2",
    "s3torchconnector": ">=1.2,<2",
    "torchdata": ">=0.9 (the native S3 handler: 0.9 only; StatefulDataLoader's state layout: checked on 0.9.0 and 0.11.0)",
    "torch": ">=2.0",
}


class IncompatibleLibrary(ImportError):
    """An installed library lacks a private part we rely on (a release outside the range we know)."""


def _incompatible(library: str, part: str, use: str) -> IncompatibleLibrary:
    try:
        installed = importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        installed = "not installed"
    return IncompatibleLibrary(
        f"{use} needs {library}'s {part}, which {library} {installed} lacks; install {library}{KNOWN_TO_WORK[library]}"
    )


# iopath's S3PathHandler makes its boto3 client from a named AWS profile in its private ``_get_client``; we
# override it to hand iopath our configured client (endpoint, credentials, timeouts).
def iopath_handler_with_client(make_client: Callable[[], Any]) -> Any:
    """An iopath ``S3PathHandler`` whose every request goes through ``make_client()``'s client."""
    from iopath.common.s3 import S3PathHandler

    if not callable(getattr(S3PathHandler, "_get_client", None)):
        raise _incompatible("iopath", "S3PathHandler._get_client", "the iopath backend")

    class ConfiguredS3PathHandler(S3PathHandler):
        def _get_client(self, bucket: str) -> Any:
            return make_client()

    return ConfiguredS3PathHandler(profile=None)


# iopath's chunked reader reads one range per call only through its private ``_read_from_s3``; its public
# ``read`` keeps one chunk and reads sequentially, so several ranges in flight need the private method.
def iopath_read_range(stream: Any, start: int, end: int) -> bytes:
    """Bytes ``start..end-1`` of an iopath ``S3ChunkReadIO``, in one ranged GET of iopath's."""
    read_from_s3 = getattr(stream, "_read_from_s3", None)
    if read_from_s3 is None:
        raise _incompatible("iopath", "S3ChunkReadIO._read_from_s3", "the iopath backend")
    return read_from_s3(range(start, end - 1))  # iopath's range is inclusive


# s3torchconnector's S3Client lives in a private module, and its GET as a stream of the CRT's parts (without
# the S3Reader that keeps every byte read so far in memory) is its private ``_get_object_stream``.
def crt_s3_client_class() -> Any:
    """s3torchconnector's ``S3Client`` class."""
    try:
        from s3torchconnector._s3client import S3Client
    except ImportError as error:
        if importlib.util.find_spec("s3torchconnector") is None:
            raise ModuleNotFoundError(
                "the s3torchconnector backend needs `pip install torchdata-s3ext[s3torchconnector]`"
            ) from error
        raise _incompatible("s3torchconnector", "_s3client.S3Client", "the s3torchconnector backend") from error
    if not callable(getattr(S3Client, "_get_object_stream", None)):
        raise _incompatible("s3torchconnector", "S3Client._get_object_stream", "the s3torchconnector backend")
    return S3Client


def crt_object_stream(client: Any, bucket: str, key: str, start: int, end: int) -> Any:
    """The CRT's parts of bytes ``start..end-1`` of an object, in order, as an iterator of buffers."""
    return client._get_object_stream(bucket, key, start=start, end=end)


# torchdata's native S3 handler (AWS C++ SDK) is its private extension module ``torchdata._torchdata``.
def torchdata_native_s3_handler(alternatives: str) -> Any:
    """torchdata's ``S3Handler`` class; ``ModuleNotFoundError`` naming ``alternatives`` where it is missing."""
    import torchdata

    extension = getattr(torchdata, "_torchdata", None)
    if extension is None or not hasattr(extension, "S3Handler"):
        raise ModuleNotFoundError(
            "the s3fileloader backend needs torchdata's native S3 extension (torchdata._torchdata.S3Handler), "
            f"which this torchdata install lacks; use another backend: {alternatives}"
        )
    return extension.S3Handler


# A botocore body is read fastest straight from the ``http.client`` response under it (``readinto`` a part
# buffer: no allocation, no copies); botocore's ``StreamingBody._raw_stream`` and urllib3's ``_fp`` are
# private, so any other shape falls back to the public ``body.read``.
def http_response_of(body: Any) -> Optional[Any]:
    """``(urllib3_response, http_response)`` under a botocore ``StreamingBody``, or ``None`` if its shape is new."""
    urllib3_response = getattr(body, "_raw_stream", None)
    http_response = getattr(urllib3_response, "_fp", None)
    if http_response is None or not hasattr(http_response, "readinto") or not hasattr(urllib3_response, "release_conn"):
        return None
    return urllib3_response, http_response


# StatefulDataLoader's ``state_dict()`` keeps its workers' snapshots, and whether its last batches are in them,
# under private keys (its iterator's class constants ``_SNAPSHOT``, ``_WORKER_SNAPSHOTS``,
# ``_STEPS_SINCE_SNAPSHOT``, and the module's ``_ITERATOR_FINISHED``); a checkpoint of our readers reads them.
class LoaderSnapshot(NamedTuple):
    """What a multi-process ``StatefulDataLoader`` state says of its workers."""

    #: each worker's snapshot, in worker order
    workers: List[Mapping[str, Any]]
    #: batches were handed out since the snapshot (``snapshot_every_n_steps > 1``)
    lagging: bool
    #: the epoch ended in every worker
    epoch_ended: bool


def _stateful_loader_keys() -> Any:
    """The private key names of ``StatefulDataLoader``'s state, from torchdata itself."""
    try:
        from torchdata.stateful_dataloader import stateful_dataloader as module

        keys = module._StatefulMultiProcessingDataLoaderIter
        return (keys._SNAPSHOT, keys._WORKER_SNAPSHOTS, keys._STEPS_SINCE_SNAPSHOT, module._ITERATOR_FINISHED)
    except (ImportError, AttributeError) as error:
        raise _incompatible("torchdata", "StatefulDataLoader's state keys (_SNAPSHOT, _WORKER_SNAPSHOTS, "
                            "_STEPS_SINCE_SNAPSHOT, _ITERATOR_FINISHED)", "Reading a StatefulDataLoader checkpoint") from error


def stateful_loader_snapshot(state: Any) -> Optional[LoaderSnapshot]:
    """The workers' snapshots in a multi-process ``StatefulDataLoader.state_dict()``; ``None`` when ``state``
    is not one."""
    if not isinstance(state, Mapping):
        return None
    snapshot, worker_snapshots, steps_since_snapshot, iterator_finished = _stateful_loader_keys()
    if snapshot not in state:
        return None
    workers = state[snapshot][worker_snapshots]
    ordered = [workers[key] for key in sorted(workers, key=lambda key: int(str(key).split("_")[-1]))]
    return LoaderSnapshot(ordered, bool(state.get(steps_since_snapshot)), bool(state.get(iterator_finished)))


def stateful_loader_epoch_ended(state: Mapping[str, Any]) -> bool:
    """Whether a ``StatefulDataLoader.state_dict()`` (of either kind) was taken once its epoch had ended."""
    return bool(state.get(_stateful_loader_keys()[3]))
