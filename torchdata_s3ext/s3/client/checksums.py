"""Full-object checksums as S3 keeps them (``x-amz-checksum-*``: base64 of the big-endian digest), computed a
chunk at a time: :func:`new_checksum`.

CRC64NVME (what S3 computes for every new upload since 2025) and CRC32C come from ``awscrt.checksums``, a
hardware CRC (tens of GB/s on one core; botocore uses it when installed: ``pip install
'torchdata-s3ext[crt]'``); without awscrt this machine cannot compute them and :func:`new_checksum` says so
(``None``). CRC32 is ``zlib``'s (a few GB/s; faster here than awscrt's), SHA-1 and SHA-256 ``hashlib``'s.
"""
import base64
import hashlib
import zlib
from typing import Any, Callable, Optional, Tuple

__all__ = ["ALGORITHMS", "CRC_ALGORITHMS", "Checksum", "checksum_b64", "new_checksum"]

#: the CRCs S3 keeps, in the order a HEAD's answer is read (an object carries one)
CRC_ALGORITHMS: Tuple[str, ...] = ("CRC64NVME", "CRC32C", "CRC32")
#: every full-object checksum S3 keeps
ALGORITHMS: Tuple[str, ...] = CRC_ALGORITHMS + ("SHA256", "SHA1")

_CRC_BYTES = {"CRC64NVME": 8, "CRC32C": 4, "CRC32": 4}


def _crc_function(algorithm: str) -> Optional[Callable[[Any, int], int]]:
    """``function(data, previous) -> crc`` for a CRC of :data:`CRC_ALGORITHMS`, ``None`` without awscrt."""
    if algorithm == "CRC32":
        return zlib.crc32
    try:
        from awscrt import checksums
    except ImportError:
        return None
    return checksums.crc64nvme if algorithm == "CRC64NVME" else checksums.crc32c


class Checksum:
    """One checksum being computed: :meth:`update` with each chunk in order, then :meth:`b64digest`."""

    def __init__(self, algorithm: str, update: Callable[[Any], None], digest: Callable[[], bytes]) -> None:
        self.algorithm = algorithm
        self.update = update
        self._digest = digest

    def b64digest(self) -> str:
        """The checksum as S3 writes it: base64 of the big-endian digest."""
        return base64.b64encode(self._digest()).decode()


class _Crc:
    """A running CRC: the previous value carried into the next chunk's."""

    def __init__(self, function: Callable[[Any, int], int], size: int) -> None:
        self._function, self._size, self._value = function, size, 0

    def update(self, data: Any) -> None:
        self._value = self._function(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._size, "big")


def new_checksum(algorithm: str) -> Optional[Checksum]:
    """A new :class:`Checksum` of ``algorithm`` (one of :data:`ALGORITHMS`), ``None`` when this machine cannot
    compute it (CRC64NVME and CRC32C without awscrt).

    >>> checksum = new_checksum("CRC32")
    >>> checksum.update(b"123456789")
    >>> checksum.b64digest()  # the CRC-32 check value, 0xCBF43926
    'y/Q5Jg=='
    """
    if algorithm in _CRC_BYTES:
        function = _crc_function(algorithm)
        if function is None:
            return None
        crc = _Crc(function, _CRC_BYTES[algorithm])
        return Checksum(algorithm, crc.update, crc.digest)
    if algorithm in ("SHA256", "SHA1"):
        digest = hashlib.new(algorithm.lower())
        return Checksum(algorithm, digest.update, digest.digest)
    raise ValueError(f"unknown checksum algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")


def checksum_b64(algorithm: str, data: bytes) -> Optional[str]:
    """``data``'s ``algorithm`` checksum as S3 writes it, ``None`` when this machine cannot compute it."""
    checksum = new_checksum(algorithm)
    if checksum is None:
        return None
    checksum.update(data)
    return checksum.b64digest()
