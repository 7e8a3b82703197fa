"""A shard's bytes -> one S3 object, streamed while the shard is written: no local copy, bounded memory.

The bytes gather into parts of ``part_size``; each full part goes to an :class:`UploadPool` thread as an
UploadPart of one multipart upload, created when the first part fills. ``finish`` sends the last part and
completes the upload on another thread, so the writer goes on with the next shard meanwhile. A shard smaller
than one part never starts a multipart upload: it is one PutObject. Either way the object appears only
whole: S3 shows a multipart upload's object once it is completed, and :meth:`S3ShardUpload.abort` (an error,
an interrupt) removes the parts uploaded so far. A process killed outright leaves its open upload behind,
invisible but stored, until the bucket's ``AbortIncompleteMultipartUpload`` lifecycle rule ends it.

Memory: the pool lets at most ``max_in_flight`` parts travel at once; the writer blocks with the next part
until a slot frees, while the samples of the part after it are still referenced: at most
``(max_in_flight + 2) * part_size`` per writer (and a sample).

Every request goes through the one retry loop (:func:`~torchdata_s3ext.s3.client.retry.call_with_retries`) with
botocore's own retries off, and its errors are translated naming the shard's ``s3://`` URL. A complete whose
answer was lost is retried; S3 then says ``NoSuchUpload``, and a HEAD tells whether the object is there with
the size written. As boto3's ``upload_file`` does, parts carry a CRC32 checksum (and the complete, each
part's) unless the client computes checksums only when required (``AWS_REQUEST_CHECKSUM_CALCULATION``).
"""
import concurrent.futures
import threading
import warnings
from typing import Any, Callable, Dict, List, NamedTuple, Optional, TypeVar

from .._config import S3Config
from ..s3.client.botocore_errors import botocore_errors_translated
from ..s3.client.clients import boto3_client
from ..s3.client.objects import head_object
from ..s3.client.retry import call_with_retries
from ..s3.url import parse_s3_url

__all__ = ["MIN_PART_SIZE", "MAX_PARTS", "StoredObject", "S3ShardUpload", "UploadPool"]

T = TypeVar("T")

#: S3's smallest part (but the last) and most parts in one upload
MIN_PART_SIZE = 5 << 20
MAX_PARTS = 10_000


class StoredObject(NamedTuple):
    """What a store holds once a shard is complete."""

    url: str
    size: int
    #: the object's ETag as S3 gives it (quoted); ``None`` for a local file
    etag: Optional[str]
    #: the MD5 (hex) of the bytes written, for a local file (an S3 object has its ETag)
    md5sum: Optional[str]


class UploadPool:
    """The threads that upload a writer's parts (``max_in_flight`` of them) and complete its uploads, with a
    slot per part so that at most ``max_in_flight`` parts are held at once."""

    def __init__(self, max_in_flight: int) -> None:
        self._parts = concurrent.futures.ThreadPoolExecutor(max_in_flight, thread_name_prefix="s3-upload-part")
        self._finishers = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="s3-upload-complete")
        self._slots = threading.BoundedSemaphore(max_in_flight)

    def submit_part(self, send: Callable[[], T]) -> "concurrent.futures.Future[T]":
        """``send()`` on a part thread, once a slot is free (blocks until then); the slot frees when it ends."""
        self._slots.acquire()
        try:
            future = self._parts.submit(send)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def submit_finish(self, finish: Callable[[], T]) -> "concurrent.futures.Future[T]":
        """``finish()`` on a completing thread (it may wait for parts: never on a part thread)."""
        return self._finishers.submit(finish)

    def shutdown(self) -> None:
        self._finishers.shutdown(wait=True)
        self._parts.shutdown(wait=True)


class S3ShardUpload:
    """One shard written to ``url`` (``s3://bucket/key``) as it comes: :meth:`write` its bytes in order, then
    :meth:`finish` (the object appears when the returned future is done) or :meth:`abort`."""

    def __init__(self, url: str, config: S3Config, pool: UploadPool, part_size: int) -> None:
        self.url = url
        self.location = parse_s3_url(url)
        self.config = config
        self.pool = pool
        self.part_size = part_size
        self.client = boto3_client(config, retries=False)
        self._checksum = getattr(self.client.meta.config, "request_checksum_calculation", None) == "when_supported"
        self._chunks: List[Any] = []
        self._buffered = 0
        self._size = 0
        self._upload_id: Optional[str] = None
        self._parts: List["concurrent.futures.Future[Dict[str, Any]]"] = []
        self._failure: Optional[BaseException] = None

    def write(self, chunk: Any) -> None:
        """Add ``chunk`` (bytes-like); each part that fills is handed to the pool (waiting for a slot)."""
        view = memoryview(chunk)
        if not view.readonly:  # a bytearray the caller may fill again once write() returns: keep a copy
            view = memoryview(view.tobytes())
        while view.nbytes:
            taken = view[: self.part_size - self._buffered]
            self._chunks.append(taken)
            self._buffered += taken.nbytes
            view = view[taken.nbytes:]
            if self._buffered == self.part_size:
                self._send_part()

    def check(self) -> None:
        """Raise the error of a part that failed (after its retries), while the shard is still being written."""
        if self._failure is not None:
            raise self._failure

    def finish(self) -> "concurrent.futures.Future[StoredObject]":
        """End the shard: its last bytes are sent and the object is made whole in the background."""
        data = self._take_buffer()
        if self._upload_id is None:
            return self.pool.submit_part(lambda: self._put(data))
        if data:
            self._submit(data)
        return self.pool.submit_finish(self._complete)

    def abort(self) -> None:
        """Give the shard up: parts not yet sent are dropped, the upload (if any) and its parts removed. Never
        raises: an upload it cannot remove is invisible anyway, and named in a warning."""
        for part in self._parts:
            part.cancel()
        concurrent.futures.wait(self._parts)
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        try:
            self._call(lambda: self._ignoring_no_such_upload(lambda: self.client.abort_multipart_upload(
                Bucket=self.location.bucket, Key=self.location.key, UploadId=upload_id)))
        except OSError as error:
            warnings.warn(f"{self.url}: could not abort multipart upload {upload_id} ({error}); its parts stay "
                          "stored, never visible, until the bucket's AbortIncompleteMultipartUpload rule ends them",
                          stacklevel=2)

    def _take_buffer(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks, self._buffered = [], 0
        self._size += len(data)
        return data

    def _send_part(self) -> None:
        data = self._take_buffer()
        if self._upload_id is None:
            extra = {"ChecksumAlgorithm": "CRC32"} if self._checksum else {}
            response = self._call(lambda: self.client.create_multipart_upload(
                Bucket=self.location.bucket, Key=self.location.key, **extra))
            self._upload_id = response["UploadId"]
        self._submit(data)

    def _submit(self, data: bytes) -> None:
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise ValueError(f"{self.url}: a shard of more than {MAX_PARTS} parts of {self.part_size} bytes "
                             "(S3's limit): use a larger part_size or a smaller max_bytes")
        part = self.pool.submit_part(lambda: self._upload_part(number, data))
        part.add_done_callback(self._note_failure)
        self._parts.append(part)

    def _note_failure(self, part: "concurrent.futures.Future[Dict[str, Any]]") -> None:
        if not part.cancelled() and part.exception() is not None and self._failure is None:
            self._failure = part.exception()

    def _call(self, request: Callable[[], T]) -> T:
        """``request()``, retried through the one loop, its errors naming the shard's URL."""

        def translated() -> T:
            with botocore_errors_translated(self.url, self.config):
                return request()

        return call_with_retries(self.url, self.config.max_attempts, translated)

    def _upload_part(self, number: int, data: bytes) -> Dict[str, Any]:
        extra = {"ChecksumAlgorithm": "CRC32"} if self._checksum else {}
        response = self._call(lambda: self.client.upload_part(
            Bucket=self.location.bucket, Key=self.location.key, UploadId=self._upload_id, PartNumber=number,
            Body=data, **extra))
        part = {"PartNumber": number, "ETag": response["ETag"]}
        if self._checksum and response.get("ChecksumCRC32"):
            part["ChecksumCRC32"] = response["ChecksumCRC32"]
        return part

    def _put(self, data: bytes) -> StoredObject:
        extra = {"ChecksumAlgorithm": "CRC32"} if self._checksum else {}
        response = self._call(lambda: self.client.put_object(
            Bucket=self.location.bucket, Key=self.location.key, Body=data, **extra))
        return StoredObject(self.url, self._size, response.get("ETag"), None)

    def _complete(self) -> StoredObject:
        """Wait for every part, then complete the upload; on any failure, abort it and raise."""
        try:
            parts = [part.result() for part in self._parts]
            attempts = 0

            def complete() -> Any:
                nonlocal attempts
                attempts += 1
                return self._ignoring_no_such_upload(lambda: self.client.complete_multipart_upload(
                    Bucket=self.location.bucket, Key=self.location.key, UploadId=self._upload_id,
                    MultipartUpload={"Parts": parts}), lost_answer=attempts > 1)

            response = self._call(complete)
            etag = response.get("ETag") if response is not None else self._etag_of_completed()
        except BaseException:
            self.abort()
            raise
        return StoredObject(self.url, self._size, etag, None)

    def _ignoring_no_such_upload(self, request: Callable[[], T], lost_answer: bool = True) -> Optional[T]:
        """``request()``, or ``None`` when S3 no longer knows the upload and ``lost_answer`` says an earlier
        attempt may have ended it (an abort or a complete whose answer never came back)."""
        from botocore.exceptions import ClientError

        try:
            return request()
        except ClientError as error:
            if lost_answer and error.response.get("Error", {}).get("Code") == "NoSuchUpload":
                return None
            raise

    def _etag_of_completed(self) -> str:
        """The ETag of the object an earlier complete made, once a HEAD shows it has the size written."""
        head = head_object(self.url, self.config)
        if head.size != self._size:
            raise OSError(f"{self.url}: the upload is gone after a complete whose answer was lost, and the object "
                          f"has {head.size} bytes, not the {self._size} written")
        return head.etag
