"""Where a shard's bytes go: an S3 object (:class:`~.upload.S3ShardUpload`) or a local file
(:class:`LocalShardFile`), one interface (``write``, ``finish``, ``abort``), chosen by the URL.

Both check as they go: ``check`` raises the error of a part that has failed while the shard is still written.

A local shard is written under a hidden temporary name beside its final one (``.NAME.RANDOM.part``, which no
shard listing takes for a shard), flushed to disk, and renamed once complete, so a reader never sees half a
shard; a process killed outright leaves its temporary file behind, never a short shard.
"""
import concurrent.futures
import hashlib
import os
import secrets
from typing import Any, Optional, Union

from .._config import S3Config
from ..s3.url import is_pipe_url, is_s3_url, local_path
from .upload import S3ShardUpload, StoredObject, UploadPool

__all__ = ["LocalShardFile", "Sink", "open_sink"]


class LocalShardFile:
    """One shard written to a local ``path`` under a temporary name, renamed to ``path`` by :meth:`finish`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = local_path(url)
        folder, name = os.path.split(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        self.partial_path = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.part")
        # os.open, not tempfile: the shard gets the mode a new file gets (0o666 less the umask), not 0o600
        self._file = os.fdopen(os.open(self.partial_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")
        self._md5 = hashlib.md5()
        self._size = 0

    def write(self, chunk: Any) -> None:
        self._file.write(chunk)
        self._md5.update(chunk)
        self._size += memoryview(chunk).nbytes

    def check(self) -> None:
        """Nothing to raise: a local write fails in :meth:`write` itself."""

    def finish(self) -> "concurrent.futures.Future[StoredObject]":
        """Flush the file to disk and give it its name; the returned future is already done."""
        future: "concurrent.futures.Future[StoredObject]" = concurrent.futures.Future()
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.partial_path, self.path)
        except BaseException as error:
            self.abort()
            future.set_exception(error)
            return future
        future.set_result(StoredObject(self.url, self._size, None, self._md5.hexdigest()))
        return future

    def abort(self) -> None:
        """Drop the temporary file."""
        self._file.close()
        try:
            os.unlink(self.partial_path)
        except FileNotFoundError:
            pass


Sink = Union[S3ShardUpload, LocalShardFile]


def open_sink(url: str, config: S3Config, pool: Optional[UploadPool], part_size: int) -> Sink:
    """A sink for one shard at ``url``: ``s3://`` on ``pool``'s threads, a local path or ``file://`` URL on disk."""
    if is_s3_url(url):
        if pool is None:
            raise ValueError(f"{url}: writing to S3 needs an UploadPool")
        return S3ShardUpload(url, config, pool, part_size)
    if is_pipe_url(url):
        raise ValueError(f"cannot write shards to a pipe: URL: {url!r}")
    return LocalShardFile(url)
