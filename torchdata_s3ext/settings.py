"""``WdsSettings``: every choice of one chain from a shard spec to decoded samples, checked once, and the chain
of stages it makes: ``order`` -> ``split`` -> ``open`` -> ``tar`` -> ``group`` -> ``shuffle`` -> ``decode``."""
import dataclasses
import functools
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ._config import S3Config
from .epochs.clock import EpochClock
from .epochs.checkpoint import CheckpointMismatch, stage_states
from .epochs.order import ShardOrder, check_order_state, epoch_order
from .epochs.readers import Ranks, ReaderSplit, check_ranks, current_reader
from .epochs.seeds import pipe_seed
from .epochs.shuffling import SampleShuffler
from .s3.listing import ShardSpec, list_shards
from .s3.shard_index import ShardIndex, is_index_url, read_shard_index
from .s3.stats import PipeStats
from .samples.decode import Decoder, SampleDecoding, fields_decoded, pair_decoded
from .samples.decode.failures import GIVE_UP_AFTER
from .samples.grouping import Grouper, SampleGrouper
from .samples.opener import OpenSettings, ShardOpener
from .samples.policy import ErrorCounts, check_on_error
from .samples.tar import TarMembers
from .stage import Stage

__all__ = ["WDS_OPTIONS", "WdsSettings"]

#: ``wds_pipe``'s and ``wds_node``'s own keywords (besides the S3Config fields and the backend's options)
WDS_OPTIONS = ("backend", "shuffle", "shuffle_buffer", "decode", "seed", "suffix", "on_error", "config", "rank", "world_size",
               "use_index", "weights", "stop", "samples_per_epoch")


def _index_of(shards: ShardSpec, use_index: bool, config: S3Config) -> Optional[ShardIndex]:
    """The shard index ``shards`` names, or (``use_index``) the one in the prefix or folder it names, if there
    is one there; ``None``: the shards are listed."""
    if not isinstance(shards, str):
        return None
    if is_index_url(shards):
        return read_shard_index(shards, config)
    if not use_index or any(mark in shards for mark in "{*?") or shards.startswith("pipe:"):
        return None
    try:
        return read_shard_index(shards.rstrip("/") + "/index.json", config)
    except FileNotFoundError:
        return None


@dataclasses.dataclass(frozen=True)
class WdsSettings:
    """Every choice of a ``wds_pipe``, checked once: the listed shards, how to open them, the shuffles' seed."""

    shard_urls: List[str]
    opening: OpenSettings
    shuffle: bool
    shuffle_buffer: int
    decode: Union[bool, str]
    seed: int
    seed_chosen: bool
    on_error: str
    ranks: Ranks
    #: each shard's samples, from a shard index (``None``: not known)
    sample_counts: Optional[List[int]] = None

    @classmethod
    def of(cls, shards: ShardSpec, *, backend: str = "auto", shuffle: bool = True, shuffle_buffer: int = 1000,
           decode: Union[bool, str] = True, seed: Optional[int] = None, suffix: Optional[Union[str, Sequence[str]]] = None,
           on_error: str = "raise", config: Optional[S3Config] = None, rank: Optional[int] = None,
           world_size: Optional[int] = None, use_index: bool = False, **open_s3_kwargs: Any) -> "WdsSettings":
        check_on_error(on_error)
        ranks = check_ranks(rank, world_size)
        if decode not in (True, False, "samples"):
            raise ValueError(f"decode must be True (the PNG pair), 'samples' (every field) or False, not {decode!r}")
        if not isinstance(shuffle_buffer, int) or isinstance(shuffle_buffer, bool) or shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be a positive int, got {shuffle_buffer!r}")
        # Listing and reading agree on the endpoint, credentials and attempts: one config serves both.
        opening = OpenSettings.from_keywords(backend, config, others={"wds_pipe options": WDS_OPTIONS}, **open_s3_kwargs)
        chosen_seed, seed_chosen = pipe_seed(seed)
        counts: Optional[List[int]] = None
        index = _index_of(shards, use_index, opening.config)
        if index is not None:
            shard_urls, counts = index.urls, index.sample_counts
            indexed = {shard.url: (shard.filesize, shard.etag) for shard in index.shards}
            opening = dataclasses.replace(opening, indexed=indexed)
        else:
            shard_urls = list_shards(shards, suffix=suffix, config=opening.config)
        return cls(shard_urls, opening, bool(shuffle), shuffle_buffer, decode, chosen_seed, seed_chosen, on_error, ranks,
                   counts)

    def samples_of_rank(self, epoch: int) -> int:
        """How many samples this rank reads in ``epoch``: the shards at its positions of the epoch's order
        (every sample where there is one rank). ``TypeError`` without a shard index to count them."""
        if self.sample_counts is None:
            raise TypeError("WdsPipe instance doesn't have valid length: its shards were listed, not read from a "
                            "shard index (wds_pipe('s3://bkt/train/index.json') gives one)")
        rank, world_size = current_reader(self.ranks)
        order = epoch_order(len(self.shard_urls), self.seed, epoch, self.shuffle)
        return sum(self.sample_counts[number] for position, number in enumerate(order) if position % world_size == rank)

    def decoder(self) -> Tuple[Optional[Callable[[Dict[str, Any]], Dict[str, Any]]], str]:
        """``(what decodes a sample, the name its messages start with)``; ``None`` when samples stay raw."""
        if self.decode == "samples":
            return functools.partial(fields_decoded, decoding=SampleDecoding()), "decode_samples"
        return (pair_decoded, "decode_png_pair") if self.decode else (None, "")

    def chain(self, clock: EpochClock, error_counts: ErrorCounts, stats: PipeStats, decoded: bool = True) -> Stage[Any]:
        """The stages of one reader, from the shard order to the (``decoded``) samples."""
        order = ShardOrder(self.shard_urls, self.seed, self.shuffle, clock, self.seed_chosen)
        samples = SampleGrouper(TarMembers(ShardOpener(ReaderSplit(order, self.ranks), self.opening, stats)),
                                Grouper((), self.on_error, error_counts))
        chain: Stage[Any] = SampleShuffler(samples, self.shuffle_buffer, self.seed, self.shuffle, clock, self.seed_chosen,
                                           self.ranks)
        decode, name = self.decoder()
        if decoded and decode is not None:
            chain = Decoder(chain, decode, self.on_error, error_counts, GIVE_UP_AFTER, name)
        return chain

    def check_loaded(self, state: Dict[str, Any]) -> None:
        """``CheckpointMismatch`` at once for a state of other shards or another seed."""
        if state.get("merged") and "mix" in state["merged"]:
            raise CheckpointMismatch("this state is a mix's, merged: load it into a pipe over the same datasets")
        order = state["merged"]["order"] if state.get("merged") else stage_states(state.get("stages")).get("order")
        if order is None or "seed" not in order:
            return
        check_order_state(order, self.seed, self.seed_chosen, self.shard_urls)

    def describe(self) -> str:
        return f"{len(self.shard_urls)} shards, backend={self.opening.backend!r}"

