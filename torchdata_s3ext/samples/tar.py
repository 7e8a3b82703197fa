"""Tar reading: the members of tar shards as ``(shard_url, member_name, data)``, one member in memory.

Members come either from torchdata's ``load_from_tar()`` (:func:`read_members`, whose paths are split back
into shard URL and member name by :func:`split_inner_path`) or straight from a shard's stream
(:func:`tar_members`, read forward in mode ``r|*``, so that a damaged shard raises :class:`DamagedShard`
in our generator rather than in torchdata's). Either way a member name is what ``load_from_tar()`` gives:
normalised (``./a.png`` is ``a.png``), and a member outside the shard (``../a.png``, ``/a.png``) is a
``ValueError`` naming it.
"""
import os
import re
import tarfile
import zlib
from io import BufferedIOBase
from typing import IO, Iterable, Iterator, Optional, Tuple

__all__ = ["DamagedShard", "read_members", "split_inner_path", "tar_members"]

_SHARD_AND_MEMBER = re.compile(r"^(.*\.(?:tar|tar\.gz|tgz))/(.+)$", re.IGNORECASE)
# What a damaged shard raises while it is read (tarfile reports bad gzip data as ReadError too); a store
# failure (OSError) is not bad data and always propagates.
_DAMAGED_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, ValueError)


def split_inner_path(inner_pathname: str, shard_name: Optional[str]) -> Tuple[str, str]:
    """Split a path from ``load_from_tar()`` into ``(shard_url, member_name)``.

    ``load_from_tar()`` names a member ``os.path.normpath(os.path.join(shard_url, member_name))``, which
    turns ``s3://b/k.tar`` into ``s3:/b/k.tar``, so the URL is taken from the tar stream's name
    (``shard_name``, set by ``open_s3``) and the member name is what follows it. A stream without a name
    (torchdata's ``FileOpener`` gives none) is split after the *last* ``.tar/``, ``.tar.gz/`` or
    ``.tgz/`` in the path, and the shard URL is then that normalised path.

    Raises:
        ValueError: the member lies outside the shard (an absolute or ``..`` member name), or the
            stream has no name and the path no ``.tar/``

    >>> split_inner_path("s3:/bucket/shard-000000.tar/train/0001.png", "s3://bucket/shard-000000.tar")
    ('s3://bucket/shard-000000.tar', 'train/0001.png')
    """
    if shard_name:
        shard_prefix = os.path.join(os.path.normpath(shard_name), "")
        if not inner_pathname.startswith(shard_prefix):
            raise ValueError(
                f"tar member {inner_pathname!r} is outside shard {shard_name!r} (absolute or '..' member name?)"
            )
        return shard_name, inner_pathname[len(shard_prefix):]
    match = _SHARD_AND_MEMBER.match(inner_pathname)
    if match is None:
        raise ValueError(
            f"cannot tell shard from member in {inner_pathname!r}: the tar stream has no name and the path "
            "has no '.tar/', '.tar.gz/' or '.tgz/'; open shards with open_s3() or name the stream"
        )
    return match.group(1), match.group(2)


def read_members(pairs: Iterable[Tuple[str, BufferedIOBase]]) -> Iterator[Tuple[str, str, bytes]]:
    """Turn ``load_from_tar()`` pairs into ``(shard_url, member_name, data)``, reading and closing each member.

    A member is read whole and closed before the next one is taken: the tar stream only moves forward,
    and closing the last member lets ``load_from_tar()`` close the shard.
    """
    for inner_pathname, member_stream in pairs:
        try:
            shard_stream = getattr(member_stream, "parent_stream", None)
            shard_url, member_name = split_inner_path(inner_pathname, getattr(shard_stream, "name", None))
            data = member_stream.read()
        finally:
            member_stream.close()
        yield shard_url, member_name, data


class DamagedShard(Exception):
    """The tar stream broke while being read; ``__cause__`` says how."""


def tar_members(shard_url: str, tar_stream: IO[bytes]) -> Iterator[Tuple[str, str, bytes]]:
    """Expand one tar (or compressed tar) stream into ``(shard_url, member_name, data)``, regular files only.

    The stream is read forward only (mode ``r|*``), each member whole before the next header, and finished
    members are forgotten, so memory holds one member. Member names are normalised as ``load_from_tar()``
    does (``./a.png`` is ``a.png``), and a member outside the shard is an error, as there.

    Raises:
        DamagedShard: the stream is not a tar, is cut short, or names a member outside the shard; the
            original error is its ``__cause__``
    """
    try:
        with tarfile.open(fileobj=tar_stream, mode="r|*") as tar:
            for member in tar:
                if member.isfile():
                    inner_pathname = os.path.normpath(os.path.join(shard_url, member.name))
                    _, member_name = split_inner_path(inner_pathname, shard_url)
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    yield shard_url, member_name, data
                tar.members = []  # a streaming TarFile keeps every header it has read otherwise
    except _DAMAGED_TAR_ERRORS as error:
        raise DamagedShard() from error
