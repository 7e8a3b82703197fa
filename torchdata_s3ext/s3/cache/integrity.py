"""What a miss's copy is checked against before it becomes an entry, by ``cache_verify`` level
(:func:`copy_check`; the levels are checked where the user gives them, in :mod:`..settings`):

- ``"auto"`` (default): the object's full-object CRC (CRC64NVME, CRC32C or CRC32) when its HEAD gives one,
  computed over the bytes as they are copied (CRC64NVME and CRC32C with awscrt's hardware CRC, 0.04 CPU-s per
  GB; CRC32 with zlib, 0.25); else size and ETag only;
- ``"md5"``: the copy's MD5 against the ETag where the ETag is one (a single-part upload without SSE-KMS or
  SSE-C; about 1.3 CPU-s per GB), else as ``"auto"``;
- ``"size"``: size and ETag only: the copy has the HEAD's size, and the GETs read the version with the HEAD's ETag.

Every level checks the size and the ETag (:mod:`.opening` refuses a stream whose ETag is not the HEAD's).
"""
import base64
import dataclasses
import hashlib
import logging
from typing import Optional

from ..client.checksums import CRC_ALGORITHMS, Checksum, new_checksum
from ..client.objects import ObjectHead

__all__ = ["CopyCheck", "copy_check"]

logger = logging.getLogger("torchdata_s3ext")
_said_no_crt = False


@dataclasses.dataclass(frozen=True)
class CopyCheck:
    """The checksum a copy's bytes must have: ``algorithm`` (``"CRC64NVME"``, ..., ``"MD5"``) and its
    ``expected`` value as S3 writes checksums (base64), or neither (size and ETag only)."""

    algorithm: Optional[str] = None
    expected: Optional[str] = None

    def new_checksum(self) -> Optional[Checksum]:
        """A checksum to feed the copy's bytes to, ``None`` when nothing is to be computed."""
        if self.algorithm == "MD5":
            md5 = hashlib.md5()
            return Checksum("MD5", md5.update, md5.digest)
        return new_checksum(self.algorithm) if self.algorithm is not None else None

    def mismatch(self, url: str, checksum: Optional[Checksum]) -> Optional[str]:
        """What is wrong with the copy whose bytes went through ``checksum``, naming ``url``; ``None`` if nothing."""
        if self.algorithm is None or checksum is None:
            return None
        actual = checksum.b64digest()
        if actual == self.expected:
            return None
        if self.algorithm == "MD5":
            assert self.expected is not None
            return (f"{url}: the bytes read do not match its ETag (MD5 {base64.b64decode(actual).hex()}, "
                    f"ETag {base64.b64decode(self.expected).hex()}); not cached")
        return f"{url}: the bytes read do not match its {self.algorithm} checksum ({actual}, S3 says {self.expected}); not cached"


def copy_check(head: ObjectHead, level: str, backend_checks_md5: bool = False) -> CopyCheck:
    """What a copy of the object ``head`` describes is checked against at ``level`` (see the module docstring);
    ``backend_checks_md5``: the backend's stream checks the MD5 ETag itself (``boto3``'s ``verify_etag``), so the
    cache does not hash again."""
    if level == "size":
        return CopyCheck()
    if level == "md5" and head.content_md5 is not None:
        if backend_checks_md5:
            return CopyCheck()
        return CopyCheck("MD5", base64.b64encode(bytes.fromhex(head.content_md5)).decode())
    return _crc_check(head)


def _crc_check(head: ObjectHead) -> CopyCheck:
    """``head``'s full-object CRC, if it has one this machine computes."""
    if head.checksum is None or head.checksum[0] not in CRC_ALGORITHMS:
        return CopyCheck()
    algorithm, expected = head.checksum
    if new_checksum(algorithm) is None:
        _say_no_crt(algorithm)
        return CopyCheck()
    return CopyCheck(algorithm, expected)


def _say_no_crt(algorithm: str) -> None:
    global _said_no_crt
    if not _said_no_crt:
        _said_no_crt = True
        logger.info("the shard cache checks copies by size and ETag only: S3's %s checksums need awscrt "
                    "(pip install 'torchdata-s3ext[crt]')", algorithm)
