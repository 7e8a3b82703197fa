"""The one way in: :func:`open_shard` opens bytes ``start .. end-1`` of one shard URL, where the backend's choice,
the URL's rules, the byte range, the local cache, a shard index's record and the prefetch of the next shard
meet. Everything above the S3 layer opens shards through here, with :class:`~.settings.OpenSettings`."""
import errno
import functools
from typing import Any, BinaryIO, Callable, Optional

from .backends import backend_for_url, check_url, get_opener
from .cache import open_cached
from .io.prefetch import OpenAhead, start_after_last_request
from .settings import OpenSettings

__all__ = ["OpenAhead", "open_ahead", "open_shard"]


def open_shard(url: str, settings: OpenSettings, *, start: int = 0, end: Optional[int] = None) -> BinaryIO:
    """Bytes ``start .. end-1`` of shard ``url`` (``end=None``: to its end) as a readable binary stream: its
    URL's backend (``"auto"``: ``pipe`` for ``pipe:`` URLs, else boto3), through the cache if there is one,
    checked against its shard index's record if there is one. ``ValueError`` naming ``url`` when the backend
    cannot open it."""
    backend = backend_for_url(settings.backend, url)
    check_url(backend, url)
    open_range = functools.partial(get_opener(backend), url, settings.config, **settings.options_for(backend))
    byte_range = {} if start == 0 and end is None else {"start": start, "end": end}
    stream = open_cached(url, settings.config, open_range, settings.cache_dir, settings.cache_limit_bytes,
                         verify=settings.cache_verify, **byte_range)
    if url in settings.indexed:
        _check_indexed(url, stream, *settings.indexed[url])
    return stream


def open_ahead(opening: Callable[[], Any], current: Any) -> OpenAhead:
    """``opening()`` (the next shard's :func:`open_shard`) run on a thread of its own once ``current``, the
    stream being read, has requested its last part (at once for a stream that reads no parts ahead)."""
    ahead = OpenAhead(opening)
    start_after_last_request(current, ahead.start)
    return ahead


def _check_indexed(url: str, stream: Any, size: Optional[int], etag: Optional[str]) -> None:
    """``OSError`` naming ``url`` when the opened object is not the one its shard index describes (its size, and
    its ETag where the backend tells it: the ranged backends tell the size, ``boto3`` both)."""
    found_size, found_etag = getattr(stream, "size", None), getattr(stream, "etag", None)
    if (size is not None and found_size is not None and found_size != size) or (etag and found_etag and found_etag != etag):
        stream.close()
        raise OSError(errno.EIO, f"the shard has {found_size} bytes, ETag {found_etag}; its shard index says {size} bytes, "
                                 f"ETag {etag} (rewritten since it was indexed? write the index again)", url)
