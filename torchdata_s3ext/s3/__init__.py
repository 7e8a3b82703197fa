"""URL -> bytes: S3 URLs, clients, retries, error translation, request accounting, and one backend per client.

Nothing here knows about tar files or samples: a backend opens one URL and returns a readable binary stream.
"""
from .backends import backend_names
from .listing import list_shards
from .stats import RequestStats

__all__ = ["RequestStats", "backend_names", "list_shards"]
