"""Members read by another tar reader (``load_from_tar()``, as torchdata names them): the shard and member each
path names (:func:`split_inner_path`), and the stage that turns ``(path, stream)`` pairs into members for the
grouping (:class:`ForeignMembers`)."""
import posixpath
import re
from typing import Any, Dict, Optional, Tuple, Union

from ..stage import Stage
from .tar import ShardEnd

__all__ = ["ForeignMembers", "split_inner_path"]

_SHARD_AND_MEMBER = re.compile(r"^(.*\.(?:tar|tar\.gz|tgz))/(.+)$", re.IGNORECASE)
ForeignItem = Union[ShardEnd, Tuple[str, str, bytes]]


def split_inner_path(inner_pathname: str, shard_name: Optional[str]) -> Tuple[str, str]:
    """Split a path as ``load_from_tar()`` names members into ``(shard_url, member_name)``.

    ``load_from_tar()`` names a member ``os.path.normpath(os.path.join(shard_url, member_name))``, which
    turns ``s3://b/k.tar`` into ``s3:/b/k.tar``, so the URL is taken from ``shard_name`` where it is known and
    the member name is what follows it; without it, the path is split after the *last* ``.tar/``,
    ``.tar.gz/`` or ``.tgz/``, and the shard URL is then that normalised path.

    Raises:
        ValueError: the member lies outside the shard, or there is no shard name and no ``.tar/`` in the path

    >>> split_inner_path("s3:/bucket/shard-000000.tar/train/0001.png", "s3://bucket/shard-000000.tar")
    ('s3://bucket/shard-000000.tar', 'train/0001.png')
    """
    if shard_name:
        shard_prefix = posixpath.join(posixpath.normpath(shard_name), "")
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



class ForeignMembers(Stage[ForeignItem]):
    """Members from ``(path, stream)`` pairs as ``load_from_tar()`` gives them (when the tar reading is not
    ours to do): each member's shard URL and name from its path (:func:`split_inner_path`), a
    :class:`~.tar.ShardEnd` where the shard changes. Samples from it carry no position."""

    kind = "foreign_members"

    def __init__(self, source: Stage[Tuple[str, Any]]) -> None:
        super().__init__(source)
        self._shard: Optional[Tuple[str, Any]] = None
        self._held: Optional[ForeignItem] = None

    def reset(self, state: Optional[Dict[str, Any]] = None) -> None:
        self._shard, self._held = None, None
        super().reset(state)

    def next(self) -> ForeignItem:
        if self._held is not None:
            held, self._held = self._held, None
            return held
        try:
            inner_pathname, member_stream = self.source.next()  # type: ignore[union-attr]
        except StopIteration:
            if self._shard is None:
                raise
            ended, self._shard = self._shard, None
            return ShardEnd(ended[0])
        parent = getattr(member_stream, "parent_stream", None)
        try:
            shard_url, member_name = split_inner_path(inner_pathname, getattr(parent, "name", None))
            data = member_stream.read()
        finally:
            member_stream.close()
        member = (shard_url, member_name, data)
        if self._shard is not None and (shard_url, parent) != self._shard:
            ended, self._shard, self._held = self._shard, (shard_url, parent), member
            return ShardEnd(ended[0])
        self._shard = (shard_url, parent)
        return member
