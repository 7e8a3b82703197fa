"""The benchmark's methods: each builds a dataset of ``{"image": bytes, "label": bytes, ...}`` samples over
the same shards, the URL list read ``repeats`` times over, for a DataLoader to batch.

Every ``open_s3`` backend is a method; so are the peers they are judged against (the article's compositions
of torchdata's built-in openers and of the webdataset library, boto3 into ``BytesIO``, s3torchconnector into
``tarfile``), and ``raw`` (one streamed GET per shard, nothing parsed: the single-stream ceiling) and ``raw-parallel``
(``auto``'s ranged GETs, bodies discarded: what any client reaches here), which the runner drives itself.
``with_decode`` adds ``decode_png_pair`` (or ``decode_samples``) to any dataset.

Only the four methods built on torchdata 0.9's openers (:data:`NEEDS_TORCHDATA_DATAPIPES`) import
``torchdata.datapipes``, which torchdata 0.10 and later lack; every other method is made of torch's own
datapipes (``IterableWrapper``, ``sharding_filter``, ``map``) and ours, its tars read by ``load_wds_shards``.
"""
import functools
import importlib.util
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from ...s3.backends import BACKENDS
from .context import RANGED_BACKENDS, MethodContext
from .ours import NODE_METHOD, PIPE_METHOD, wds_node_method, wds_pipe_method
from .peers import (
    aws_cp_pipes,
    boto3_bytesio,
    file_opener,
    fsspec_file_opener,
    iopath_file_opener,
    repeated,
    s3_file_loader,
    s3torchconnector_tarfile,
    samples,
    url_pipe,
    webdataset_pipe,
)

__all__ = ["MethodContext", "METHODS", "PEERS", "UNCOUNTED", "repeated", "RAW", "RAW_PARALLEL", "RAW_METHODS", "RANGED_BACKENDS", "NO_DECODE",
           "DECODE_SAMPLES", "SAMPLES_HANDLERS", "ENCODED_BYTES", "NEEDS_TORCHDATA_DATAPIPES", "check_method_names", "build_dataset", "with_decode", "decoded_sample", "unavailable_reason"]

RAW = "raw"
RAW_PARALLEL = "raw-parallel"
#: the ceilings: bytes read and discarded, the samples counted from the tar headers, no DataLoader
RAW_METHODS = (RAW, RAW_PARALLEL)
#: ``--decode`` value that leaves the PNG bytes as they are
NO_DECODE = "none"
#: ``--decode`` value that decodes every field with ``decode_sample`` (the article's extension-less
#: ``KEY.image``/``KEY.label`` as PNGs: ``SAMPLES_HANDLERS``)
DECODE_SAMPLES = "samples"
SAMPLES_HANDLERS = {"image": "png", "label": "png"}
#: the field a decoded sample keeps its encoded size in, so that MB/s still counts the bytes read
ENCODED_BYTES = "__encoded_bytes__"


def _open_s3_method(backend: str) -> Callable[[MethodContext], Iterable]:
    def build(context: MethodContext, stats: Any = None) -> Iterable:
        import torchdata_s3ext  # noqa: F401  (registers open_s3)

        urls = context.mount_paths if backend == "local" else context.urls
        if backend == "pipe":
            urls = aws_cp_pipes(urls, context)
        streams = url_pipe(urls, context).open_s3(
            backend=backend, config=context.s3_config(), stats=stats, cache_dir=context.cache_dir,
            cache_limit_bytes=context.cache_limit_bytes, **context.ranged_options(backend)
        )
        return samples(streams)

    return build


#: name -> (what it measures, builder, needs: "s3" or "mount")
METHODS: Dict[str, Tuple[str, Optional[Callable[[MethodContext], Iterable]], str]] = {
    **{
        name: (f"open_s3(backend={name!r}): {backend.description}", _open_s3_method(name), "mount" if name == "local" else "s3")
        for name, backend in BACKENDS.items()
    },
    PIPE_METHOD: ("wds_pipe (auto): order, split, open, tar, group, shuffle, under DataLoader workers", wds_pipe_method, "s3"),
    NODE_METHOD: ("wds_node (auto) under torchdata.nodes' Loader, decoding on --num-workers threads", wds_node_method, "s3"),
    "torchdata-fsspec": ("torchdata FSSpecFileOpener (article)", fsspec_file_opener, "s3"),
    "torchdata-iopath": ("torchdata IoPathFileOpener (article)", iopath_file_opener, "s3"),
    "torchdata-s3fileloader": ("torchdata S3FileLoader (article)", s3_file_loader, "s3"),
    "torchdata-fileopener": ("torchdata FileOpener on a mounted path (article's FFM)", file_opener, "mount"),
    "webdataset-awscli": ("webdataset with pipe:aws s3 cp URL - (article)", webdataset_pipe, "s3"),
    "boto3-bytesio": ("boto3 get_object -> BytesIO + tarfile stream (the article's boto3)", boto3_bytesio, "s3"),
    "s3torchconnector-tarfile": ("s3torchconnector S3Client.get_object + tarfile stream (r|)", s3torchconnector_tarfile, "s3"),
    RAW: ("one streamed GET per shard, nothing parsed (the ceiling)", None, "s3"),
    RAW_PARALLEL: ("auto's ranged GETs (part size, concurrency), bodies discarded, nothing parsed", None, "s3"),
}

#: our method -> the peer it wraps or replaces, which it should at least match
PEERS: Dict[str, str] = {
    "boto3": "boto3-bytesio",
    "fsspec": "torchdata-fsspec",
    "iopath": "torchdata-iopath",
    "s3fileloader": "torchdata-s3fileloader",
    "awscli": "webdataset-awscli",
    "pipe": "webdataset-awscli",
    "s3torchconnector": "s3torchconnector-tarfile",
    "local": "torchdata-fileopener",
}

#: methods whose S3 requests happen where ``process_stats()`` cannot see them, and why
UNCOUNTED: Dict[str, str] = {
    "torchdata-fsspec": "fsspec makes and caches its own s3fs client",
    "torchdata-s3fileloader": "torchdata's native client sends its requests unseen",
    "webdataset-awscli": "`aws s3 cp` sends its requests unseen",
    "s3torchconnector-tarfile": "the CRT sends its requests unseen",
}

#: the methods built on torchdata 0.9's openers and ``load_from_tar``, which later torchdata releases lack
NEEDS_TORCHDATA_DATAPIPES = ("torchdata-fsspec", "torchdata-iopath", "torchdata-s3fileloader", "torchdata-fileopener")
#: the optional module each method needs, by import name, and what the table says without it
_REQUIRES: Dict[str, Tuple[str, str]] = {
    "s3torchconnector": ("s3torchconnector", "s3torchconnector is not installed"),
    "s3torchconnector-tarfile": ("s3torchconnector", "s3torchconnector is not installed"),
    "webdataset-awscli": ("webdataset", "webdataset is not installed"),
    "fsspec": ("s3fs", "needs `pip install 'torchdata-s3ext[fsspec]'`"),
    "iopath": ("iopath", "needs `pip install 'torchdata-s3ext[iopath]'`"),
    NODE_METHOD: ("torchdata.nodes", "needs torchdata.nodes (torchdata 0.10 or later)"),
    **{name: ("torchdata.datapipes", "needs torchdata 0.9's datapipes") for name in NEEDS_TORCHDATA_DATAPIPES},
}


def check_method_names(names: Iterable[str]) -> List[str]:
    """``names`` with ``all`` expanded; ``ValueError`` listing the valid names for an unknown one."""
    chosen: List[str] = []
    for name in names:
        if name == "all":
            chosen.extend(method for method in METHODS if method not in chosen)
        elif name not in METHODS:
            raise ValueError(f"unknown method {name!r}; valid methods: all, {', '.join(METHODS)}")
        elif name not in chosen:
            chosen.append(name)
    return chosen


def unavailable_reason(name: str, context: MethodContext) -> Optional[str]:
    """Why ``name`` cannot run here (a library missing, no S3 source or no mount), or ``None``."""
    needs = METHODS[name][2]
    if needs == "mount" and not context.mount_paths:
        return "needs the shards on a local path (--mount DIR, or a local SRC with --server)"
    if needs == "s3" and not context.urls:
        return "needs the shards in S3 (an s3:// SRC, or --server)"
    module, missing = _REQUIRES.get(name, (None, None))
    if module is not None and not _importable(module):
        return missing
    return None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing too
        return False


def build_dataset(name: str, context: MethodContext) -> Iterable:
    builder = METHODS[name][1]
    if builder is None:
        raise ValueError(f"method {name!r} is not a dataset; the runner drives it itself")
    return builder(context)


def decoded_sample(sample: Dict[str, Any], decoder: str) -> Dict[str, Any]:
    """``decode_png_pair(sample, decoder=decoder)``, or ``decode_sample`` for ``DECODE_SAMPLES``, keeping the
    encoded size of the sample's bytes in ``ENCODED_BYTES``."""
    from ...samples.decode import decode_png_pair, decode_sample

    encoded = sum(len(value) for value in sample.values() if isinstance(value, (bytes, bytearray)))
    if decoder == DECODE_SAMPLES:
        return {**decode_sample(sample, handlers=SAMPLES_HANDLERS), ENCODED_BYTES: encoded}
    return {**decode_png_pair(sample, decoder=decoder), ENCODED_BYTES: encoded}


def with_decode(dataset: Any, decoder: str) -> Any:
    """``dataset`` with every sample decoded by ``decoder`` (in the DataLoader workers, if any), or as it is
    for ``NO_DECODE``. Both torchdata's pipes and webdataset's pipelines take a ``map`` stage."""
    if decoder == NO_DECODE:
        return dataset
    return dataset.map(functools.partial(decoded_sample, decoder=decoder))
