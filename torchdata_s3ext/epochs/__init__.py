"""samples -> epochs: seeded shard and sample shuffles, sharding over DataLoader workers and ranks, a reading
service for ``DataLoader2`` and a rank equalizer, so that every sample comes exactly once per epoch."""
from .sharding import (
    ExactlyOnceReadingService,
    RankEqualizer,
    ReaderShardingIterDataPipe,
    SampleShufflerIterDataPipe,
    ShardShufflerIterDataPipe,
    reading_service,
)

__all__ = [
    "ExactlyOnceReadingService",
    "RankEqualizer",
    "ReaderShardingIterDataPipe",
    "SampleShufflerIterDataPipe",
    "ShardShufflerIterDataPipe",
    "reading_service",
]
