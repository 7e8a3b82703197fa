"""Byte ranges of an object (``start .. end-1``, at the object's offsets): the rules every backend follows
(checked before any request, clamped to the object's size, empty, whole), and :class:`ByteRange`, a stream
cut to one."""
import io
from typing import Optional, Tuple

from ..client.errors import WrongLength

__all__ = ["ByteRange", "check_part_length", "check_range", "clamp_range", "empty_range", "is_empty", "is_whole",
           "seek_target"]

#: how much a :class:`ByteRange` reads at a time to skip the bytes before its start
SKIP_CHUNK = 1 << 20


def check_range(url: str, start: int, end: Optional[int]) -> None:
    """``ValueError`` naming ``url`` unless ``0 <= start <= end`` (``end=None``: the object's end).

    >>> check_range("s3://bkt/a.tar", 10, 5)
    Traceback (most recent call last):
    ...
    ValueError: byte range start=10, end=5 of 's3://bkt/a.tar': start must be 0 or more and at most end
    """
    if start < 0 or (end is not None and (end < 0 or start > end)):
        raise ValueError(f"byte range start={start}, end={end} of {url!r}: start must be 0 or more and at most end")


def clamp_range(start: int, end: Optional[int], size: int) -> Tuple[int, int]:
    """Where a stream of bytes ``start .. end-1`` of a ``size``-byte object ends: at ``end``, at most at the
    object's end, never before ``start`` (a ``start`` past the end gives an empty stream there).

    >>> clamp_range(0, None, 100), clamp_range(10, 500, 100), clamp_range(300, None, 100)
    ((0, 100), (10, 100), (300, 300))
    """
    return start, max(start, size if end is None else min(end, size))


def seek_target(url: str, offset: int, whence: int, position: int, end: Optional[int], start: int = 0) -> int:
    """Where ``seek(offset, whence)`` goes in a stream at ``position`` whose bytes run ``start .. end`` (at the
    object's offsets); ``ValueError`` naming ``url`` for an unknown ``whence`` or a place before ``start``."""
    origins = {io.SEEK_SET: 0, io.SEEK_CUR: position, io.SEEK_END: end}
    if whence not in origins:
        raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
    target = origins[whence] + offset  # type: ignore[operator]
    if target < 0:
        raise ValueError(f"negative seek position {target} in {url}")
    if target < start:
        raise ValueError(f"seek to {target}, before the start of the byte range {start}-{end} of {url}")
    return target


def check_part_length(url: str, data: bytes, start: int, end: int) -> bytes:
    """``data``, checked to be the ``end - start`` bytes a part asked for; else a :class:`~.errors.WrongLength`
    naming ``url`` and the part (transient: the part is fetched again)."""
    if len(data) != end - start:
        raise WrongLength(f"{url}: bytes {start}-{end - 1} came back as {len(data)} bytes, not {end - start}")
    return data


def is_empty(start: int, end: Optional[int], size: int) -> bool:
    """Whether bytes ``start .. end-1`` of a ``size``-byte object are none at all.

    >>> is_empty(5, 5, 100), is_empty(100, None, 100), is_empty(0, 1, 100)
    (True, True, False)
    """
    clamped_start, clamped_end = clamp_range(start, end, size)
    return clamped_start == clamped_end


def is_whole(start: int, end: Optional[int], size: Optional[int] = None) -> bool:
    """Whether bytes ``start .. end-1`` are the whole object (``size``, where known)."""
    return start == 0 and (end is None or (size is not None and end >= size))


class ByteRange(io.RawIOBase):
    """Bytes ``start .. end-1`` of ``inner`` (a readable binary stream, now at ``inner_position``), with the
    offsets of ``inner``: ``tell()`` is ``start`` at first, and reads return ``b""`` at ``end`` (``None``: at
    ``inner``'s end).

    Reaching ``start`` waits for the first read: ``inner`` is seeked there when ``seekable`` (and the stream can
    then seek anywhere in ``start .. end``, ``SEEK_END`` from ``end``, which must be given; before ``start`` is
    a ``ValueError`` naming ``url``), else the bytes before it are read and dropped (a command's stdout).
    Closing closes ``inner``.
    """

    def __init__(
        self, url: str, inner: io.IOBase, start: int, end: Optional[int] = None, *, inner_position: int = 0,
        seekable: bool = False,
    ) -> None:
        check_range(url, start, end)
        if seekable and end is None:
            raise ValueError(f"a seekable byte range of {url!r} needs its end")
        self.url = url
        self.start = start
        self.end = end
        self._inner = inner
        self._inner_position = inner_position
        self._position = start
        self._seekable = seekable

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._seekable

    def tell(self) -> int:
        self._check_open()
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if not self._seekable:
            raise io.UnsupportedOperation(f"seek in a forward-only stream ({self.url})")
        self._position = seek_target(self.url, offset, whence, self._position, self.end, self.start)
        return self._position

    def read(self, size: Optional[int] = -1) -> bytes:
        self._check_open()
        wanted = self._wanted(size)
        if wanted == 0 or not self._reach_position():
            return b""
        data = self._inner.read(wanted) if wanted > 0 else self._inner.read()  # type: ignore[attr-defined]
        self._advance(len(data))
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        self._check_open()
        view = memoryview(buffer).cast("B")
        wanted = self._wanted(len(view))
        if wanted == 0 or not self._reach_position():
            return 0
        count = self._inner.readinto(view[:wanted]) or 0  # type: ignore[attr-defined]
        self._advance(count)
        return count

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"I/O operation on a closed stream ({self.url})")

    def _wanted(self, size: Optional[int]) -> int:
        """How many bytes a read of ``size`` may return (-1: all up to ``inner``'s end)."""
        if self.end is None:
            return -1 if size is None or size < 0 else size
        remaining = max(self.end - self._position, 0)
        return remaining if size is None or size < 0 else min(size, remaining)

    def _advance(self, count: int) -> None:
        self._position += count
        self._inner_position += count

    def _reach_position(self) -> bool:
        """Bring ``inner`` to the position; ``False`` if it ended before (the range is then empty)."""
        if self._inner_position == self._position:
            return True
        if self._seekable:
            self._inner.seek(self._position)
            self._inner_position = self._position
            return True
        while self._inner_position < self._position:  # forward only: the bytes before are read and dropped
            wanted = min(self._position - self._inner_position, SKIP_CHUNK)
            skipped = self._inner.read(wanted)  # type: ignore[attr-defined]
            if not skipped:
                self.end = self._position  # the stream ended before start
                return False
            self._inner_position += len(skipped)
        return True


def empty_range(url: str, start: int) -> ByteRange:
    """An empty byte range at ``start`` (a backend asked for no bytes makes no GET)."""
    return ByteRange(url, io.BytesIO(), start, start, inner_position=start, seekable=True)
