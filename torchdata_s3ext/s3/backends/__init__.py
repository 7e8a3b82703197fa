"""The registry of ``open_s3`` backends: each opens one URL and returns a readable binary stream.

A backend is a module with ``open_url(url: str, config: S3Config, <its options>, *, start: int = 0,
end: Optional[int] = None) -> BinaryIO``; adding a backend is adding a module and a line in ``BACKENDS``.
Modules are imported on first use, so a missing optional library only affects its own backend.

Every backend opens a byte range: the stream is bytes ``start .. end-1`` of the object (``end=None``, or an
``end`` past the object: to its end; a ``start`` at or past the end: an empty stream); a negative ``start``
or ``end``, or ``start > end``, is a ``ValueError`` naming the URL, raised before any request. ``start`` and
``end`` are keyword-only and not user options (``open_s3`` does not list them). The ranged backends
(``ranged=True``: boto3, fsspec, iopath) and ``local`` and ``s3fileloader`` give a seekable stream at the
object's offsets: ``tell()`` is ``start`` at first, reads end at ``end``, ``SEEK_END`` counts from ``end``,
and a seek before ``start`` is a ``ValueError``. The others (awscli, s3torchconnector, pipe) are forward-only.
What each one requests is in ``docs/backends.md``: nothing outside the range, but for ``s3fileloader`` (the
whole object) and ``pipe`` (the command's output from its first byte).
"""
import importlib
import importlib.util
from typing import Any, BinaryIO, Callable, Dict, NamedTuple, Tuple

from ..io.sizing import SIZING_OPTIONS, check_sizing_options
from ..url import is_pipe_url, is_s3_url

__all__ = ["Backend", "BACKENDS", "AUTO_BACKEND", "PIPE_BACKEND", "backend_for_url", "backend_names", "check_backend_name",
           "check_backend_options", "check_url", "get_opener", "missing_libraries"]


class Backend(NamedTuple):
    """One line of the registry."""

    #: the module whose ``open_url`` opens a URL, imported on first use
    module: str
    #: how it reads an object, in a few words (``bench --list-methods`` prints it)
    description: str
    #: reads the object as ranged parts, several in flight: takes ``memory_budget`` (parts adapted to the link
    #: within it) or ``part_size`` and ``concurrency`` (fixed); see ``s3/io/sizing.py``
    ranged: bool
    #: the libraries it needs beyond the package's own, and the extra that installs them
    requires: Tuple[str, ...] = ()
    extra: str = ""


BACKENDS: Dict[str, Backend] = {
    "boto3": Backend(f"{__name__}._boto3", "boto3 ranged GETs, several in flight; seekable", True),
    "fsspec": Backend(f"{__name__}._fsspec", "s3fs `cat_file` ranged parts, several in flight; seekable", True,
                      ("s3fs", "fsspec", "aiobotocore"), "fsspec"),
    "iopath": Backend(f"{__name__}._iopath", "iopath's ranged reads, several in flight; seekable", True,
                      ("iopath",), "iopath"),
    "s3fileloader": Backend(f"{__name__}._s3fileloader", "torchdata's native S3 handler, whole object in memory", False),
    "awscli": Backend(f"{__name__}._awscli", "`aws s3api get-object` in a subprocess, resumed with --range", False),
    "s3torchconnector": Backend(f"{__name__}._s3torchconnector", "the CRT's part stream, through s3torchconnector's client", False),
    "local": Backend(f"{__name__}._local", "a local path or file:// URL (a mounted bucket)", False),
    "pipe": Backend(f"{__name__}._pipe", "webdataset's `pipe:COMMAND` URLs: the command's stdout, through the shell", False),
}

#: what ``backend="auto"`` means today for ``s3://`` URLs; it opens ``pipe:`` URLs with ``PIPE_BACKEND``
AUTO_BACKEND = "boto3"
PIPE_BACKEND = "pipe"

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


def backend_for_url(name: str, url: str) -> str:
    """The concrete backend that opens ``url`` when ``name`` is asked for: ``"auto"`` takes ``pipe:`` URLs to
    ``pipe`` and every other URL to :data:`AUTO_BACKEND`; a named backend opens every URL itself.

    >>> backend_for_url("auto", "pipe:cat shard.tar"), backend_for_url("auto", "s3://bkt/shard.tar")
    ('pipe', 'boto3')
    """
    if name == "auto" and is_pipe_url(url):
        return PIPE_BACKEND
    return check_backend_name(name)


def check_backend_options(name: str, options: Dict[str, Any]) -> None:
    """``ValueError`` for values backend ``name`` cannot take, before any request: for the ranged backends,
    sizes that are not positive whole numbers, and a ``memory_budget`` too small or given with ``part_size`` or
    ``concurrency`` (see ``s3/io/sizing.py``). Which keywords a backend takes is ``settings.py``'s check."""
    if BACKENDS[check_backend_name(name)].ranged:
        check_sizing_options(**{option: options[option] for option in SIZING_OPTIONS if option in options})


def check_url(backend: str, url: str) -> None:
    """``ValueError`` naming ``url`` when ``backend`` cannot open it: ``pipe`` opens ``pipe:`` URLs only,
    ``local`` any path, every other backend ``s3://`` URLs only."""
    if backend == PIPE_BACKEND:
        if not is_pipe_url(url):
            raise ValueError(f"not a pipe: URL (expected pipe:COMMAND) for backend {backend!r}: {url!r}")
    elif backend != "local" and not is_s3_url(url):
        hint = f" (pipe: URLs open with backend='auto' or {PIPE_BACKEND!r})" if is_pipe_url(url) else ""
        raise ValueError(f"not an S3 URL (expected s3://bucket/key) for backend {backend!r}{hint}: {url!r}")


def missing_libraries(name: str) -> Tuple[str, ...]:
    """What backend ``name`` needs and this environment lacks."""
    return tuple(library for library in BACKENDS[check_backend_name(name)].requires
                 if importlib.util.find_spec(library) is None)


def get_opener(name: str) -> Opener:
    """Backend ``name``'s ``open_url``; ``ModuleNotFoundError`` naming the extra to install when a library it
    needs is missing."""
    backend = BACKENDS[check_backend_name(name)]
    missing = missing_libraries(name)
    if missing:
        raise ModuleNotFoundError(
            f"the {check_backend_name(name)} backend needs {', '.join(missing)}: "
            f"`pip install 'torchdata-s3ext[{backend.extra}]'` (or [all] for every backend)"
        )
    return importlib.import_module(backend.module).open_url
