"""The local shard cache: a shard is read from S3 once per machine, then from local disk.

:func:`open_cached` is the one entry: one HEAD (size, ETag) per open, then

- a **hit** (the entry is complete and has that ETag and size): the file, opened as the ``local`` backend opens
  one, read at disk speed; the HEAD is the only request;
- a **miss**: the backend's stream, its bytes teed into ``KEY.part`` as they are read (:mod:`.tee`),
  so samples come out while the shard downloads. The copy is written on a thread of its own and checksummed
  on another (:mod:`.writer`), each at most :data:`WRITE_BEHIND_BYTES` behind the reader; the shard's last
  read returns at once, and the copy is checked (its size, and the checksum its ``cache_verify`` level names:
  :mod:`.integrity`) and renamed into place in the background (:func:`join_finalizers` waits for that; an
  exiting process waits up to :data:`FINALIZE_AT_EXIT_S`). A backend stream that tells its version (ETag) and
  size must tell the HEAD's, else the object changed in between and the stream is served uncached.

One lock per shard (``filelock``) makes every DataLoader worker and process of the machine fetch a shard
once: its writer holds it for the whole download and its check, and the others wait for it (for as long as
the shard grows; :data:`STALLED_AFTER_S` without a byte and they read from S3 instead), then read the file. Room is
reserved for the whole shard before its first byte (:mod:`.store`), so the limit holds at every moment.

What is not cached, but streamed from S3 as without a cache: a byte range (``start``/``end``) that misses (a
resumed read: its bytes before ``start`` would have to be fetched to make a whole entry); a shard larger than
the limit, or one the limit cannot make room for (every other entry being written); a shard whose writer
stalled; a shard that changed between its HEAD and its GET; and everything after a write to the cache failed
(a full disk: one warning, the partial file removed, the bytes still served from S3). A copy that fails its check is dropped with a warning, and the
shard read on from S3: the backend's bytes are the ones served. A stream closed before its end drops its
partial copy.
"""
import io
import os
import time
from typing import Any, BinaryIO, Callable, Optional

from ..._config import S3Config
from ..client.objects import ObjectHead, head_object
from ..io.ranges import ByteRange, clamp_range
from ..stats import process_stats
from ..url import is_s3_url
from .entry import FINALIZE_AT_EXIT_S, CacheEntry, join_finalizers, warn
from .integrity import copy_check
from .store import CacheStore, cache_store
from .tee import TeeReader
from .writer import WRITE_BEHIND_BYTES, CacheWriter

__all__ = ["open_cached", "join_finalizers", "FINALIZE_AT_EXIT_S", "STALLED_AFTER_S", "WRITE_BEHIND_BYTES"]

#: seconds a shard being written by another process may go without growing before a reader stops waiting
STALLED_AFTER_S = 30.0
_POLL_S = 0.2


def open_cached(
    url: str, config: S3Config, open_range: Callable[..., BinaryIO], cache_dir: Optional[str],
    cache_limit_bytes: Optional[int] = None, *, start: int = 0, end: Optional[int] = None, verify: str = "auto",
) -> BinaryIO:
    """``url``'s bytes ``start .. end-1`` through the cache in ``cache_dir`` (``None``: no cache, and no
    request more), with ``cache_limit_bytes`` the most its files take (``None``: no limit), a miss's copy
    checked at the ``verify`` level (``cache_verify``: ``"auto"``, ``"md5"`` or ``"size"``, see
    :mod:`.integrity`). ``open_range()``
    opens the whole object on the backend, ``open_range(start=, end=)`` a byte range. Only ``s3://`` URLs are
    cached. A hit is seekable; a miss is as seekable as the backend's stream (see the module docstring)."""
    whole = start == 0 and end is None
    if cache_dir is None or not is_s3_url(url):
        return open_range() if whole else open_range(start=start, end=end)
    store = cache_store(cache_dir, cache_limit_bytes)
    head = head_object(url, config)
    key = store.key(config.endpoint_url, url)
    lock = store.shard_lock(key) if store.fits(head.size) else None
    if lock is not None and not _wait_for(lock, store.path(key, ".part")):
        lock = None  # its writer stopped making progress: read from S3 beside it
    try:
        if lock is not None:
            data_path = store.trusted_path(key, url, head)
            if data_path is not None:
                stream = _open_hit(url, data_path, head.size, start, end)
                store.touch(key)
                process_stats().add(cache_hits=1)
                return stream
        process_stats().add(cache_misses=1)
        if lock is None or not whole or store.write_failed is not None or not _reserved(store, key, url, head):
            return open_range() if whole else open_range(start=start, end=end)
        try:
            source = open_range()
        except BaseException:
            store.remove(key)  # its reservation
            raise
        changed = _version_change(url, source, head)
        if changed is not None:
            store.remove(key)  # this stream's bytes are not the version the entry would be kept under
            warn(changed, stacklevel=4)
            return source
        # the backend's own MD5 check (boto3's verify_etag) covers the copy: the tee reads it forward only
        check = copy_check(head, verify, backend_checks_md5=getattr(source, "checks_content_md5", False))
        try:
            writer = CacheWriter(store.path(key, ".part"), check.new_checksum())
        except OSError as error:
            store.remove(key)
            store.writing_failed(url, error)
            return source
        tee_lock, lock = lock, None  # the tee, then its finalizer, holds it until its copy is in place or dropped
        entry = CacheEntry(store, key, url, head, tee_lock, check)
        return TeeReader(url, source, writer, entry)  # type: ignore[return-value]
    finally:
        if lock is not None:
            lock.release()


def _version_change(url: str, source: Any, head: ObjectHead) -> Optional[str]:
    """What says ``source``, a backend's stream, reads another version of ``url`` than ``head`` describes, as far
    as it tells (its ETag, the version its GETs are pinned to, and its size), naming ``url``; ``None`` if nothing."""
    etag, size = getattr(source, "etag", None), getattr(source, "size", None)
    if etag and _bare_etag(etag) != _bare_etag(head.etag):
        return f"{url}: its GET read ETag {etag}, its HEAD said {head.etag} (changed in between?); not cached"
    if size is not None and size != head.size:
        return f"{url}: its GET read {size} bytes, its HEAD said {head.size} (changed in between?); not cached"
    return None


def _bare_etag(etag: str) -> str:
    """An ETag without its quotes or weak mark, as servers differ in writing them."""
    return etag[2:].strip('"') if etag.startswith("W/") else etag.strip('"')


def _reserved(store: CacheStore, key: str, url: str, head: ObjectHead) -> bool:
    """Room for ``url`` reserved as ``key``; ``False`` when the limit cannot make it or the disk is full."""
    try:
        return store.reserve(key, url, head)
    except OSError as error:
        store.remove(key)
        store.writing_failed(url, error)
        return False


def _wait_for(lock: Any, part_path: str) -> bool:
    """Take ``lock``, waiting as long as ``part_path`` (its holder's download) grows; ``False`` if it stalls."""
    from filelock import Timeout

    last_size, last_change = -1, time.monotonic()
    while True:
        try:
            lock.acquire(timeout=_POLL_S)
            return True
        except Timeout:
            try:
                size = os.stat(part_path).st_size
            except FileNotFoundError:
                size = -1
            now = time.monotonic()
            if size != last_size:
                last_size, last_change = size, now
            elif now - last_change > STALLED_AFTER_S:
                return False


class _CachedFile(io.FileIO):
    """A cache file, counting the bytes read from it."""

    def readinto(self, buffer: Any) -> Optional[int]:  # type: ignore[override]
        count = super().readinto(buffer)
        if count:
            process_stats().add(bytes_from_cache=count)
        return count


def _open_hit(url: str, path: str, size: int, start: int, end: Optional[int]) -> BinaryIO:
    """The cached shard as the ``local`` backend opens a file: buffered, seekable, a range at the object's offsets."""
    file = io.BufferedReader(_CachedFile(path, "r"))
    if start == 0 and end is None:
        return file  # type: ignore[return-value]
    start, end = clamp_range(start, end, size)
    return ByteRange(url, file, start, end, seekable=True)  # type: ignore[return-value]
