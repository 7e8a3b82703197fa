"""Seeds: the pipe's seed (drawn once when none is given, the same on every rank), the seed of each epoch's
orders, and :class:`Draws`, a seeded stream of random numbers whose whole state is how many it has given."""
import hashlib
import random
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["Draws", "epoch_seed", "pipe_seed"]


def epoch_seed(*parts: object) -> int:
    """A 64-bit seed from any printable parts, identical in every process (unlike ``hash()``).

    Example:
        >>> epoch_seed("shards", 0, 1, None) == epoch_seed("shards", 0, 1, None) != epoch_seed("shards", 0, 2, None)
        True
    """
    material = "|".join(map(repr, parts)).encode()
    return int.from_bytes(hashlib.sha256(material).digest()[:8], "little")


def pipe_seed(seed: Optional[int]) -> Tuple[int, bool]:
    """``(the seed, whether it was chosen)``: ``seed`` itself, or one drawn at random when it is ``None`` and,
    in an initialised ``torch.distributed`` process group, rank 0's (a broadcast: every rank must build the pipe,
    as every rank does when each runs the same script)."""
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}: {seed!r}")
        return seed, True
    drawn = random.SystemRandom().getrandbits(62)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        value = torch.tensor([drawn], dtype=torch.int64)
        dist.broadcast(value, src=0)
        drawn = int(value.item())
    return drawn, False


class Draws:
    """Random ints in ``[0, bound)`` from ``seed``, drawn in blocks by numpy; ``draws`` says how many were given,
    and ``Draws(seed, bound, draws)`` goes on from there (a state of one number)."""

    BLOCK = 4096

    def __init__(self, seed: int, bound: int, draws: int = 0) -> None:
        self.seed, self.bound, self.draws = seed, bound, draws
        self._block: List[int] = []
        self._block_number = -1

    def next(self) -> int:
        block_number, offset = divmod(self.draws, self.BLOCK)
        if block_number != self._block_number:
            rng = np.random.default_rng([self.seed & (2**63 - 1), block_number])
            self._block = rng.integers(0, self.bound, self.BLOCK).tolist()
            self._block_number = block_number
        self.draws += 1
        return self._block[offset]

    def permutation(self, count: int) -> List[int]:
        """A permutation of ``range(count)`` from the seed alone (for emptying a buffer at the end)."""
        return np.random.default_rng([self.seed & (2**63 - 1), 2**62]).permutation(count).tolist()
