"""The registry of ``open_s3`` backends: each opens one URL and returns a readable binary stream.

A backend is a module with ``open_url(url: str, config: S3Config, **options) -> BinaryIO``; adding a
backend is adding a module and a line in ``BACKENDS``. Modules are imported on first use, so a missing
optional library only affects its own backend.
"""
import importlib
from typing import BinaryIO, Callable, Dict, Tuple

__all__ = ["BACKENDS", "AUTO_BACKEND", "backend_names", "check_backend_name", "get_opener"]

#: name -> (module, what it wraps, whether it streams with bounded memory)
BACKENDS: Dict[str, Tuple[str, str, bool]] = {
    "boto3": ("torchdata_s3ext.s3.backends._boto3", "boto3 get_object, streamed", True),
    "fsspec": ("torchdata_s3ext.s3.backends._fsspec", "fsspec / s3fs file, block reads", True),
    "iopath": ("torchdata_s3ext.s3.backends._iopath", "iopath's S3PathHandler (downloads to a local cache file)", True),
    "s3fileloader": ("torchdata_s3ext.s3.backends._s3fileloader", "torchdata's native S3FileLoader (whole object in RAM)", False),
    "awscli": ("torchdata_s3ext.s3.backends._awscli", "`aws s3 cp URL -` in a subprocess", True),
    "s3torchconnector": ("torchdata_s3ext.s3.backends._s3torchconnector", "AWS s3torchconnector (CRT)", True),
    "local": ("torchdata_s3ext.s3.backends._local", "local path or file:// URL (a mounted bucket)", True),
}

#: what ``backend="auto"`` means today
AUTO_BACKEND = "boto3"

Opener = Callable[..., BinaryIO]


def backend_names() -> Tuple[str, ...]:
    return ("auto",) + tuple(BACKENDS)


def check_backend_name(name: str) -> str:
    """The concrete backend for ``name`` ("auto" resolved); ``ValueError`` listing the valid names otherwise."""
    if name == "auto":
        return AUTO_BACKEND
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(backend_names())}")
    return name


def get_opener(name: str) -> Opener:
    module = importlib.import_module(BACKENDS[check_backend_name(name)][0])
    return module.open_url
