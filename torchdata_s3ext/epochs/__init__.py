"""samples -> epochs, as stages: ``order`` (each epoch's seeded shard order), ``readers`` (which reader this
process is, and the ``split`` stage: its share), ``shuffling`` (the ``shuffle`` stage: a seeded buffer),
``clock`` (the pipe's own epoch count), ``seeds``, ``checkpoint`` (states and ``merge_states``) and
``equalizer`` (equal counts on every rank)."""
from .checkpoint import CheckpointMismatch
from .merging import merge_states
from .equalizer import RankEqualizer

__all__ = ["CheckpointMismatch", "RankEqualizer", "merge_states"]
