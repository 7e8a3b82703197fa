"""The local shard cache's entries on disk, shared by every process of the machine: where each one lives,
which one a reader may trust, and the space they take, held under a limit by reserving before writing and
evicting the least recently used.

``cache_dir`` holds::

    entries/KEY.json   the entry's metadata: URL, ETag, size, complete. Written first with ``complete: false``
                       (the reservation of ``size`` bytes), then again once the shard is in place
    entries/KEY.part   the shard being written; only while its writer holds KEY's lock
    entries/KEY.data   the complete shard, renamed from KEY.part once its size (and checksum) checked
    locks/KEY.lock     the shard's lock (filelock): held by its writer for the whole download, and briefly by a
                       reader checking the entry and opening it, or by an eviction removing it
    cache.lock         the cache-wide lock: reservations, evictions and cleaning happen under it

``KEY`` is a hash of the endpoint and URL, then the shard's file name (for people looking). Every entry counts
its ``size`` plus :data:`ENTRY_OVERHEAD` (its metadata file's block) from its reservation on, so the files in
``cache_dir`` never add up to more than the limit, partial ones included. A metadata file is only ever replaced
whole (written aside, then renamed), and an entry is trusted only when complete and matching the object's HEAD,
so whatever a killed process leaves is either a complete entry or garbage, which the next reservation (and
each process's first use of the cache) removes once its lock is free.
"""
import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import threading
import warnings
from typing import Dict, Iterator, List, Optional, Tuple

from ..client.objects import ObjectHead

__all__ = ["CacheStore", "ENTRY_OVERHEAD", "cache_store"]

#: bytes every entry counts beyond its shard: its metadata file, one filesystem block
ENTRY_OVERHEAD = 4096
_SUFFIXES = (".json", ".part", ".data", ".json.tmp")

logger = logging.getLogger("torchdata_s3ext")


@dataclasses.dataclass(frozen=True)
class _Entry:
    key: str
    complete: bool
    charge: int  # bytes it counts against the limit
    last_used: float


def _quiet_remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class CacheStore:
    """The entries of one cache directory under one limit (see the module docstring); safe across threads and
    processes. Made by :func:`cache_store`, which cleans what killed processes left on first use."""

    def __init__(self, cache_dir: str, limit_bytes: Optional[int]) -> None:
        if limit_bytes is not None and limit_bytes < 0:
            raise ValueError(f"cache_limit_bytes must be 0 or more (or None: no limit), got {limit_bytes}")
        self.cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
        self.limit_bytes = limit_bytes
        self.entries_dir = os.path.join(self.cache_dir, "entries")
        self.locks_dir = os.path.join(self.cache_dir, "locks")
        os.makedirs(self.entries_dir, exist_ok=True)
        os.makedirs(self.locks_dir, exist_ok=True)
        #: set once writing failed for want of space (or any write error): this process caches no more
        self.write_failed: Optional[OSError] = None
        self.clean()

    def writing_failed(self, url: str, error: OSError) -> None:
        """Writing ``url``'s entry failed (a full disk): no more caching in this process, and one warning (for
        the first of the entries being written then)."""
        if self.write_failed is not None:
            return
        self.write_failed = error
        reason = "the disk is full" if error.errno in (errno.ENOSPC, errno.EDQUOT) else f"writing failed ({error})"
        message = (f"{url}: {reason} in the shard cache {self.cache_dir}; streaming from S3 without caching from now "
                   f"on in this process")
        logger.warning(message)
        warnings.warn(message, stacklevel=5)

    # -- names and locks

    @staticmethod
    def key(endpoint_url: Optional[str], url: str) -> str:
        digest = hashlib.sha256(f"{endpoint_url or ''}\n{url}".encode()).hexdigest()[:32]
        name = re.sub(r"[^A-Za-z0-9._-]", "_", url.rsplit("/", 1)[-1])[-64:]
        return f"{digest}-{name}"

    def path(self, key: str, suffix: str) -> str:
        return os.path.join(self.entries_dir, key + suffix)

    def shard_lock(self, key: str):
        """A new handle on ``key``'s lock (each handle excludes every other, in this process too)."""
        from filelock import FileLock

        return FileLock(os.path.join(self.locks_dir, key + ".lock"), thread_local=False)

    def _cache_lock(self):
        from filelock import FileLock

        os.makedirs(self.locks_dir, exist_ok=True)
        return FileLock(os.path.join(self.cache_dir, "cache.lock"), thread_local=False)

    def _try_lock(self, key: str):
        """``key``'s lock, taken, or ``None`` when another handle holds it."""
        from filelock import Timeout

        lock = self.shard_lock(key)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return None
        return lock

    # -- one entry (the caller holds its lock)

    def _meta(self, key: str) -> Optional[Dict]:
        try:
            with open(self.path(key, ".json")) as file:
                meta = json.load(file)
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def _write_meta(self, key: str, meta: Dict) -> None:
        aside = self.path(key, ".json.tmp")
        with open(aside, "w") as file:
            json.dump(meta, file)
        os.replace(aside, self.path(key, ".json"))

    def trusted_path(self, key: str, url: str, head: ObjectHead) -> Optional[str]:
        """The complete shard of ``key`` if it is ``url`` at the version ``head`` describes (ETag and size,
        and the file's own size), else ``None``."""
        meta = self._meta(key)
        if not meta or not meta.get("complete") or meta.get("url") != url:
            return None
        if meta.get("etag") != head.etag or meta.get("size") != head.size:
            return None
        data_path = self.path(key, ".data")
        try:
            if os.stat(data_path).st_size != head.size:
                return None
        except FileNotFoundError:
            return None
        return data_path

    def touch(self, key: str) -> None:
        """Mark ``key`` used now (least recently used entries are evicted first)."""
        try:
            os.utime(self.path(key, ".json"))
        except FileNotFoundError:
            pass

    def remove(self, key: str) -> None:
        """Forget ``key``: the shard first, so that no instant has a complete entry without its file."""
        for suffix in (".data", ".part", ".json", ".json.tmp"):
            _quiet_remove(self.path(key, suffix))

    def fits(self, size: int) -> bool:
        """Whether a shard of ``size`` bytes can be cached at all under the limit."""
        return self.limit_bytes is None or size + ENTRY_OVERHEAD <= self.limit_bytes

    def reserve(self, key: str, url: str, head: ObjectHead) -> bool:
        """Forget ``key``'s old entry and count ``head.size`` bytes for it, evicting the least recently used
        complete entries as needed; ``False`` (nothing reserved) when the limit cannot make room."""
        charge = head.size + ENTRY_OVERHEAD
        if not self.fits(head.size):
            return False
        with self._cache_lock():
            os.makedirs(self.entries_dir, exist_ok=True)  # the folder may have been emptied by hand meanwhile
            self.remove(key)
            if self.limit_bytes is not None and not self._make_room(charge):
                return False
            self._write_meta(key, {"url": url, "etag": head.etag, "size": head.size, "complete": False})
        return True

    def commit(self, key: str, url: str, head: ObjectHead) -> None:
        """The shard written to ``KEY.part`` is complete and checked: put it in place."""
        os.replace(self.path(key, ".part"), self.path(key, ".data"))
        self._write_meta(key, {"url": url, "etag": head.etag, "size": head.size, "complete": True})
        self.touch(key)

    # -- the whole cache (under the cache-wide lock)

    def _make_room(self, charge: int) -> bool:
        assert self.limit_bytes is not None
        entries = list(self._scan())
        used = sum(entry.charge for entry in entries)
        for entry in sorted((entry for entry in entries if entry.complete), key=lambda entry: entry.last_used):
            if used + charge <= self.limit_bytes:
                break
            lock = self._try_lock(entry.key)
            if lock is None:
                continue  # a reader is opening it right now: the next one in line goes instead
            try:
                self.remove(entry.key)
            finally:
                lock.release()
            used -= entry.charge
        return used + charge <= self.limit_bytes

    def usage_bytes(self) -> int:
        """What the entries count against the limit now (removing dead leftovers first)."""
        with self._cache_lock():
            return sum(entry.charge for entry in self._scan())

    def clean(self) -> None:
        """Remove what killed processes left: partial entries and stray files whose lock is free."""
        with self._cache_lock():
            for _ in self._scan():
                pass

    def _scan(self) -> Iterator[_Entry]:
        """The live entries; dead ones (partial with a free lock, unreadable, or a stray file) are removed."""
        for key in self._keys():
            meta = self._meta(key)
            data_path = self.path(key, ".data")
            complete = bool(meta and meta.get("complete") and os.path.exists(data_path))
            if not complete:
                lock = self._try_lock(key)
                if lock is not None:  # nobody is writing it: a leftover
                    try:
                        self.remove(key)
                    finally:
                        lock.release()
                    continue
                if not meta:
                    continue  # a writer between its reservation's steps counts once its metadata is written
            try:
                size = os.stat(data_path).st_size if complete else int(meta.get("size", 0))  # type: ignore[union-attr]
                last_used = os.stat(self.path(key, ".json")).st_mtime if complete else float("inf")
            except FileNotFoundError:
                continue  # its writer gave it up meanwhile
            yield _Entry(key, complete, size + ENTRY_OVERHEAD, last_used)

    def _keys(self) -> List[str]:
        keys = set()
        for name in os.listdir(self.entries_dir):
            for suffix in _SUFFIXES:
                if name.endswith(suffix):
                    keys.add(name[: -len(suffix)])
                    break
        return sorted(keys)


_stores: Dict[Tuple[str, Optional[int]], CacheStore] = {}
_stores_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    global _stores_lock
    _stores_lock = threading.Lock()  # one held by another thread at fork time would never be released


os.register_at_fork(after_in_child=_new_lock_after_fork)


def cache_store(cache_dir: str, limit_bytes: Optional[int]) -> CacheStore:
    """This process's :class:`CacheStore` of ``cache_dir`` under ``limit_bytes``, made (and cleaned) on first use."""
    key = (os.path.abspath(os.path.expanduser(cache_dir)), limit_bytes)
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = CacheStore(cache_dir, limit_bytes)
        return store
