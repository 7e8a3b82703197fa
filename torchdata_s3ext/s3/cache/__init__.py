"""The cache room: a local copy of each shard read, shared by the processes of a machine. :func:`open_cached`
serves a copy or tees a stream into a new one (:mod:`.opening`, :mod:`.tee`); :mod:`.store` holds the entries
and their budget; :mod:`.writer` writes a copy behind the reader. ``join_finalizers(timeout)`` waits for this
process's copies still being finished (``docs/cache.md``)."""
from .entry import join_finalizers
from .opening import open_cached

__all__ = ["join_finalizers", "open_cached"]
