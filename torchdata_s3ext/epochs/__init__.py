"""samples -> epochs: every sample exactly once per epoch, in a fresh seeded order, across DataLoader workers
and ranks. ``shuffling`` orders shards and samples (seeded per epoch by ``seeding``), ``readers`` splits the
shards over ranks x workers, ``equalizer`` evens out the ranks' counts, and ``service`` is the ``DataLoader2``
reading service that runs all this on ``torch.utils.data.DataLoader``."""
from .checkpoint import CheckpointMismatch, merge_states
from .equalizer import RankEqualizer
from .readers import ReaderShardingIterDataPipe
from .service import ExactlyOnceReadingService, reading_service
from .shuffling import SampleShufflerIterDataPipe, ShardShufflerIterDataPipe

__all__ = [
    "CheckpointMismatch",
    "ExactlyOnceReadingService",
    "RankEqualizer",
    "ReaderShardingIterDataPipe",
    "SampleShufflerIterDataPipe",
    "merge_states",
    "ShardShufflerIterDataPipe",
    "reading_service",
]
