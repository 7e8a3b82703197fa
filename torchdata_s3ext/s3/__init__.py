"""URL -> bytes. One way in, :func:`~.opening.open_shard` (how to open: :class:`~.settings.OpenSettings`),
beside listing (:mod:`.listing`, :mod:`.shard_index`) and request accounting (:mod:`.stats`); beneath them,
three rooms and the backends: ``client/`` (configuration -> clients, what an error means, the one retry
loop), ``io/`` (an object's bytes as a stream), ``cache/`` (the local shard cache), ``backends/`` (one module
per client, each opening one URL as a readable binary stream). Nothing here knows about tar files or samples.
"""
from .backends import backend_names
from .listing import list_shards
from .stats import RequestStats

__all__ = ["RequestStats", "backend_names", "list_shards"]
