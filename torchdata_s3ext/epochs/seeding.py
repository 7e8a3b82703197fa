"""Per-epoch seeds: :func:`epoch_seed`, and :class:`EpochSeeded`, the one place where the shufflers keep their
seed and count their epochs."""
import hashlib
import random
from typing import Any, Optional

__all__ = ["EpochSeeded", "epoch_seed"]


def epoch_seed(*parts: object) -> int:
    """A 64-bit seed from any printable parts, identical in every process (unlike ``hash()``).

    Example:
        >>> epoch_seed("shards", 0, 1, None) == epoch_seed("shards", 0, 1, None) != epoch_seed("shards", 0, 2, None)
        True
    """
    material = "|".join(map(repr, parts)).encode()
    return int.from_bytes(hashlib.sha256(material).digest()[:8], "little")


class EpochSeeded:
    """Seeding shared by the two shufflers: the loader's per-epoch seed when it gives one, else our own epochs.

    ``DataLoader`` and ``DataLoader2`` call ``set_seed`` with a fresh seed every epoch (drawn from the loader's
    generator or ``DataLoader2.seed()``, broadcast from rank 0); without a loader, epochs are counted here.
    What changes from one epoch to the next is ``_loader_seed`` and ``_epoch``, and nothing else.
    """

    seed: Optional[int]
    shuffle: bool

    def _init_seeding(self, seed: Optional[int], shuffle: bool) -> None:
        if seed is not None and not isinstance(seed, int):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}: {seed!r}")
        self.seed = seed
        self.shuffle = shuffle
        self._loader_seed: Optional[int] = None
        self._epoch = 0

    def set_shuffle(self, shuffle: bool = True) -> Any:
        self.shuffle = shuffle
        return self

    def set_seed(self, seed: int) -> Any:
        self._loader_seed = int(seed)
        return self

    def _next_epoch_seed(self, role: str, reader: object) -> int:
        """Starts an epoch: the seed for ``role`` (``"shards"``, ``"samples"``) in ``reader`` (``None``: any)."""
        self._epoch += 1
        if self._loader_seed is not None:
            return epoch_seed(role, self.seed, self._loader_seed, reader)
        own = self.seed if self.seed is not None else random.SystemRandom().getrandbits(64)
        return epoch_seed(role, own, self._epoch, reader)
