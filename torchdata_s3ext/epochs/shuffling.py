"""The two seeded shuffles: ``shuffle_shards`` (one shard order per epoch, the same in every reader) and
``shuffle_samples`` (a buffer with its own random stream in every reader), both seeded by :class:`EpochSeeded`."""
import random
from typing import Any, Dict, Iterator, List, Optional, TypeVar

from torch.utils.data import get_worker_info
from torch.utils.data.graph import traverse_dps
from torch.utils.data.graph_settings import get_all_graph_pipes
from torchdata.datapipes import functional_datapipe
from torchdata.datapipes.iter import IterDataPipe

from ..s3.compat import checkpoints_through_datapipe_wrapper
from .checkpoint import CheckpointMismatch, check_state, dataset_states, expand_merged, reader_state, resumed_items
from .passes import ShufflePass
from .readers import reader_of, sharding_of
from .seeding import EpochSeeded, epoch_seed

__all__ = ["SampleShufflerIterDataPipe", "ShardShufflerIterDataPipe"]

checkpoints_through_datapipe_wrapper()  # so that StatefulDataLoader finds shuffle_samples' checkpoints

T = TypeVar("T")


@functional_datapipe("shuffle_shards")
class ShardShufflerIterDataPipe(EpochSeeded, IterDataPipe[str]):
    r"""
    Takes shard URLs and yields them in a new seeded order each epoch, the same order in every worker and
    rank, so that sharding after it splits one permutation (functional name: ``shuffle_shards``).

    Args:
        source_datapipe: shard URLs (a short list: it is read whole each epoch)
        seed: an int makes epoch ``k``'s order a function of ``seed`` and ``k`` alone: the same in every run,
            worker and rank, under ``DataLoader`` (with or without ``generator=``, any ``num_workers``, ``fork``
            or ``spawn``), ``DataLoader2`` or no loader; the loader's seed is then not used. ``None``: the
            loader's per-epoch seed decides, so only a seeded loader reproduces an order
            (``DataLoader(generator=torch.Generator().manual_seed(n))``, ``DataLoader2.seed(n)``); without a
            loader every epoch is random
        shuffle: ``False`` keeps the given order (loaders may also switch it with ``set_shuffle``)

    Note:
        Epochs are counted by this pipe object, from 1: a new pipe starts again at epoch 1, and one pipe
        iterated by two loaders one after the other goes on counting.

    Example:
        >>> from torchdata.datapipes.iter import IterableWrapper
        >>> urls = IterableWrapper(["a.tar", "b.tar", "c.tar"]).shuffle_shards(seed=0)
        >>> sorted(urls) == ["a.tar", "b.tar", "c.tar"]
        True
    """

    def __init__(self, source_datapipe: IterDataPipe[str], seed: Optional[int] = None, shuffle: bool = True) -> None:
        self.source_datapipe = source_datapipe
        self._init_seeding(seed, shuffle)

    def __iter__(self) -> Iterator[str]:
        self._start_epoch()
        shard_urls = list(self.source_datapipe)
        if self.shuffle:
            # The same seed in every reader (no reader in the material): one permutation, split by the sharder.
            random.Random(self._epoch_seed("shards", None)).shuffle(shard_urls)
        yield from shard_urls

    def order_of(self, epoch: int, loader_seed: Optional[int]) -> List[str]:
        """The shard order of ``epoch`` begun with ``loader_seed``, as ``__iter__`` gave it; counts nothing."""
        shard_urls = list(self.source_datapipe)
        if self.shuffle:
            if self.seed is None and loader_seed is None:
                raise CheckpointMismatch(
                    "the epoch's shard order was drawn at random (no seed, no loader seed): it cannot be found again"
                )
            parts = (self.seed, epoch) if self.seed is not None else (None, loader_seed)
            random.Random(epoch_seed("shards", *parts, None)).shuffle(shard_urls)
        return shard_urls

    def __len__(self) -> int:
        return len(self.source_datapipe)


@functional_datapipe("shuffle_samples")
class SampleShufflerIterDataPipe(EpochSeeded, IterDataPipe[T]):
    r"""
    Takes samples and yields them through a seeded shuffle buffer of ``buffer_size``; each reader (worker and
    rank) draws its own stream of random numbers, derived from the seed, the epoch and its reader number
    (functional name: ``shuffle_samples``).

    It is also where a pipe is checkpointed: ``state_dict()`` says what this reader has delivered of the epoch
    (a few kilobytes: shard slices and sample positions, no sample bytes), and ``load_state_dict(state)`` makes
    the next epoch go on from it, exactly once (see ``docs/checkpoint.md``). ``StatefulDataLoader`` calls both
    on every reader; the pipes after it that we make (``decode_png_pair``, ``decode_samples``) pass them on.

    Args:
        source_datapipe: samples (downstream of ``shard_across_readers``, whose reader number it uses)
        buffer_size: samples held at once; memory grows with it. ``1`` keeps the order
        seed: an int makes epoch ``k``'s order in a reader a function of ``seed``, ``k`` and the reader
            (``instance_id`` of ``num_of_instances``: rank, worker, their numbers) alone, whatever the loader's
            seed; so the same ``seed``, epoch and ``num_workers`` x ranks give the same order in every run.
            ``None``: the loader's per-epoch seed decides (see ``shuffle_shards``)
        shuffle: ``False`` keeps the order

    Note:
        Epochs are counted by this pipe object, from 1, as in ``shuffle_shards``.

    Example:
        >>> from torchdata.datapipes.iter import IterableWrapper
        >>> samples = IterableWrapper(range(10)).shuffle_samples(buffer_size=4, seed=0)
        >>> sorted(samples) == list(range(10))
        True
    """

    def __init__(
        self, source_datapipe: IterDataPipe[T], buffer_size: int = 1000, seed: Optional[int] = None, shuffle: bool = True
    ) -> None:
        if not isinstance(buffer_size, int) or buffer_size < 1:
            raise ValueError(f"buffer_size must be a positive int, got {buffer_size!r}")
        self.source_datapipe = source_datapipe
        self.buffer_size = buffer_size
        self._init_seeding(seed, shuffle)
        self._pass: Optional[ShufflePass] = None

    def __iter__(self) -> Iterator[T]:
        self._pass = None  # until the new pass takes its first sample, the state is "before the next epoch"
        return self._samples()

    def _samples(self) -> Iterator[T]:
        # A generator: the epoch starts at the first sample asked for, so that a state loaded after iter()
        # (StatefulDataLoader loads it into the iterator it has just made) decides which epoch this is.
        self._start_epoch()
        sharding = sharding_of(self.source_datapipe)
        resuming = self._resuming
        if resuming is not None:
            if sharding is None:
                raise ValueError("a checkpoint needs shard_across_readers() upstream of shuffle_samples()")
            sharding.resume_from(resuming, self.seed)
        reader = reader_of(self.source_datapipe)
        running = resuming is not None and resuming["status"] == "running"
        own = running and resuming["reader"] is not None  # type: ignore[index]
        role = "samples-resumed" if running and not own else "samples"  # a merged state: a buffer begun anew
        shuffling = self.shuffle and self.buffer_size > 1
        rng = random.Random(self._epoch_seed(role, reader)) if shuffling else None
        self._pass = ShufflePass(self.source_datapipe, sharding, rng, self.buffer_size if shuffling else 1)
        if own:
            self._pass.restore(resuming)  # type: ignore[arg-type]
        yield from self._pass.samples()

    def state_dict(self) -> Dict[str, Any]:
        """What this reader has delivered of the epoch under way (or, between epochs, that the next one is to
        come): see ``docs/checkpoint.md``. Taken between two samples, in the process iterating the pipe."""
        # A DataLoader worker's pass that has ended is "epoch k, nothing left": the loader, resumed, asks this
        # worker again in the same epoch. In the main process, the loader then begins the next epoch.
        ended_in_worker = self._pass is not None and self._pass.finished and get_worker_info() is not None
        running = self._pass is not None and self._pass.started and (not self._pass.finished or ended_in_worker)
        if not running and self._resume is not None and self._resume_epoch == self._next_epoch():
            return self._pending_state()
        seeding = {"epoch": self._epoch if running else self._next_epoch(), "seed": self.seed,
                   "loader_seed": self._loader_seed if self.seed is None else None}  # (unused with a seed)
        if not running:
            sharding = sharding_of(self.source_datapipe)
            known = sharding.epoch_shards if sharding is not None and sharding.epoch_shards else (0, "")
            return ShufflePass.state_before(seeding, known, reader_of(self.source_datapipe))
        return self._pass.state(seeding, reader_of(self.source_datapipe))  # type: ignore[union-attr]

    def _pending_state(self) -> Dict[str, Any]:
        """The state loaded and not yet begun: what was delivered is still what it says; of a merged state,
        this reader's share, as its own state."""
        state = self._resume
        assert state is not None
        if state["reader"] is not None:
            return dict(state)
        reader = reader_of(self.source_datapipe)
        return reader_state(
            epoch=state["epoch"], status="running", seed=state["seed"], loader_seed=state["loader_seed"],
            shards=(state["shard_count"], state["shard_digest"]), reader=reader,
            remaining=resumed_items(state, [], reader),
        )

    def _epoch_order(self, state: Dict[str, Any]) -> List[str]:
        """The shard order of ``state``'s epoch, from the ``shuffle_shards`` upstream (or the list as it is)."""
        sharding = sharding_of(self.source_datapipe)
        if sharding is None:
            raise ValueError("a checkpoint needs shard_across_readers() upstream of shuffle_samples()")
        for pipe in get_all_graph_pipes(traverse_dps(sharding)):
            if isinstance(pipe, ShardShufflerIterDataPipe):
                return pipe.order_of(state["epoch"], state["loader_seed"])
        return list(sharding.source_datapipe)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Make the next epoch (in this process, or in the DataLoader workers copying this pipe) go on from
        ``state``: a reader's own (``state_dict()``, as ``StatefulDataLoader`` keeps them), a
        ``StatefulDataLoader``'s whole ``state_dict()`` of a single reader, or :func:`merge_states`'s (any
        number of readers then share what is left). A state of another pipe raises ``CheckpointMismatch``."""
        states = dataset_states(state)
        if len(states) != 1:
            raise ValueError(
                f"the state holds {len(states)} readers' states: load each into its own reader (StatefulDataLoader "
                "does), or merge them with merge_states() first"
            )
        state = check_state(states[0])
        if state["seed"] != self.seed:
            raise CheckpointMismatch(f"the checkpoint was taken with seed={state['seed']!r}, this pipe has seed={self.seed!r}")
        if state["reader"] is None and (state["status"] == "before" or state["not_started"]):
            state = expand_merged(state, self._epoch_order(state))
        for pipe in get_all_graph_pipes(traverse_dps(self)):
            if isinstance(pipe, EpochSeeded):
                pipe._load_epoch(state)

    def __len__(self) -> int:
        return len(self.source_datapipe)
