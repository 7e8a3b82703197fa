"""Mixes: ``wds_pipe({"web": ..., "books": ...}, weights=...)`` reads several named datasets at once, each
next sample's dataset drawn by weight; and ``samples_per_epoch=N``, epochs of exactly ``N`` samples that go on
where the last one stopped. The chains of :mod:`.pipeline`, one per source, under the ``mix`` stage (and the
``window`` stage for ``samples_per_epoch``)."""
import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from .epochs.checkpoint import CheckpointMismatch
from .epochs.clock import EpochClock
from .epochs.mixing import STOP_RULES, CountsInto, Mix, Passes, check_weights
from .epochs.readers import Ranks
from .epochs.seeds import epoch_seed, pipe_seed
from .epochs.window import EpochWindow, check_samples_per_epoch, rank_share
from .settings import WdsSettings
from .s3.stats import PipeStats
from .samples.policy import ErrorCounts
from .stage import Stage

__all__ = ["MixSettings", "pipe_settings"]

#: the name of the one source of a pipe that is not a mix but has ``samples_per_epoch``
SINGLE = ""


def source_seed(seed: int, name: str) -> int:
    """Source ``name``'s seed in a mix with ``seed``: each source's orders differ from the others'."""
    return epoch_seed("source", seed, name) & (2**62 - 1)


@dataclasses.dataclass(frozen=True)
class MixSettings:
    """Every choice of a mix (or of a pipe with ``samples_per_epoch``), checked once: each source's settings, the
    weights, the stop rule and the epoch's length."""

    sources: Dict[str, WdsSettings]
    weights: Dict[str, float]
    stop: str
    samples_per_epoch: Optional[int]
    seed: int
    seed_chosen: bool

    @classmethod
    def of(cls, shards: Any, *, weights: Optional[Mapping[str, Any]] = None, stop: Optional[str] = None,
           samples_per_epoch: Optional[int] = None, seed: Optional[int] = None, **options: Any) -> "MixSettings":
        samples_per_epoch = check_samples_per_epoch(samples_per_epoch)
        named = isinstance(shards, Mapping)
        if named and not shards:
            raise ValueError("shards is an empty dict: name at least one source")
        if named and not all(isinstance(name, str) and name for name in shards):
            raise ValueError(f"the sources' names must be non-empty strings, got {list(shards)!r}")
        if samples_per_epoch is not None and stop is not None:
            raise ValueError("stop= and samples_per_epoch= do not go together: with samples_per_epoch every source "
                             "starts a new pass when it runs out, and the epoch ends after that many samples")
        if stop is not None and stop not in STOP_RULES:
            raise ValueError(f"stop must be one of {', '.join(map(repr, STOP_RULES))}, got {stop!r}")
        chosen_seed, seed_chosen = pipe_seed(seed)
        specs = dict(shards) if named else {SINGLE: shards}
        sources = {}
        for name, spec in specs.items():
            settings = WdsSettings.of(spec, seed=source_seed(chosen_seed, name) if named else chosen_seed, **options)
            sources[name] = dataclasses.replace(settings, seed_chosen=seed_chosen)
        counts = {name: (sum(settings.sample_counts) if settings.sample_counts is not None else None)
                  for name, settings in sources.items()}
        checked = check_weights(list(sources), weights, counts)
        rule = "forever" if samples_per_epoch is not None else (stop or "first_exhausted")
        return cls(sources, checked, rule, samples_per_epoch, chosen_seed, seed_chosen)

    # --- what WdsPipe asks of its settings --------------------------------------------------------------

    @property
    def first(self) -> WdsSettings:
        return next(iter(self.sources.values()))

    @property
    def ranks(self) -> Ranks:
        return self.first.ranks

    @property
    def on_error(self) -> str:
        return self.first.on_error

    @property
    def named(self) -> bool:
        return SINGLE not in self.sources

    def decoder(self) -> Tuple[Optional[Callable[[Dict[str, Any]], Dict[str, Any]]], str]:
        return self.first.decoder()

    def source_counts(self) -> Dict[str, ErrorCounts]:
        return {name: ErrorCounts() for name in self.sources} if self.named else {}

    def chain(self, clock: EpochClock, error_counts: ErrorCounts, stats: PipeStats, decoded: bool = True,
              source_counts: Optional[Mapping[str, ErrorCounts]] = None) -> Stage[Any]:
        """The mix of every source's chain (each decoding its own samples), under a window for
        ``samples_per_epoch``."""
        passes = {name: Passes() for name in self.sources}
        chains = {}
        for name, settings in self.sources.items():
            counts = CountsInto(error_counts, source_counts[name]) if source_counts else error_counts
            chains[name] = settings.chain(passes[name], counts, stats, decoded)  # type: ignore[arg-type]
        mix: Stage[Any] = Mix(chains, passes, self.weights, self.stop, self.seed, clock, self.seed_chosen, self.ranks,
                              label=self.named)
        if self.samples_per_epoch is not None:
            mix = EpochWindow(mix, self.samples_per_epoch, clock, self.ranks)
        return mix

    def samples_of_rank(self, epoch: int) -> int:
        """How many samples this rank reads in ``epoch``: its share of ``samples_per_epoch``; with every source
        read whole (``stop="all_exhausted"``), the sum of their shares; ``TypeError`` where it is only known
        once read."""
        if self.samples_per_epoch is not None:
            return rank_share(self.samples_per_epoch, self.ranks)
        if self.stop != "all_exhausted":
            raise TypeError(f"WdsPipe instance doesn't have valid length: a mix with stop={self.stop!r} ends when "
                            "its draws say so; pass samples_per_epoch= for epochs of a known length")
        return sum(settings.samples_of_rank(epoch) for settings in self.sources.values())

    def check_loaded(self, state: Dict[str, Any]) -> None:
        merged = state.get("merged")
        if not merged:
            return
        if self.samples_per_epoch is not None or "mix" not in merged:
            raise CheckpointMismatch("a merged state cannot be loaded into a pipe with samples_per_epoch, and only a "
                                     "mix's merged state into a mix: resume each reader from its own state")
        if sorted(merged["sources"]) != sorted(self.sources):
            raise CheckpointMismatch(f"the checkpoint mixes datasets {sorted(merged['sources'])}, this pipe "
                                     f"{sorted(self.sources)}")

    def describe(self) -> str:
        if not self.named:
            return f"{len(self.first.shard_urls)} shards, samples_per_epoch={self.samples_per_epoch}"
        parts = ", ".join(f"{name!r}: {len(settings.shard_urls)} shards" for name, settings in self.sources.items())
        return f"{{{parts}}}, stop={self.stop!r}"


def pipe_settings(shards: Any, weights: Optional[Mapping[str, Any]] = None, stop: Optional[str] = None,
                  samples_per_epoch: Optional[int] = None, **options: Any) -> Any:
    """A single chain's settings, or a mix's for named sources (a dict) or ``samples_per_epoch``."""
    if isinstance(shards, Mapping) or samples_per_epoch is not None:
        return MixSettings.of(shards, weights=weights, stop=stop, samples_per_epoch=samples_per_epoch, **options)
    if weights is not None or stop is not None:
        raise ValueError("weights= and stop= mix named datasets: pass shards as a dict of them, "
                         "e.g. {'web': 's3://bkt/web/', 'books': 's3://bkt/books/'}")
    return WdsSettings.of(shards, **options)

