"""``wds_pipe`` and ``wds_node``: the recommended chain from a shard spec to shuffled, decoded samples, exactly
once: ``order`` -> ``split`` -> ``open`` -> ``tar`` -> ``group`` -> ``shuffle`` -> ``decode``, one chain of
stages behind two faces (a datapipe that is a plain ``IterableDataset``, and a ``torchdata.nodes`` node)."""
import dataclasses
import functools
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ._config import S3Config
from .epochs.clock import EpochClock
from .epochs.checkpoint import stage_states
from .epochs.order import ShardOrder, check_order_state, epoch_order
from .epochs.readers import Ranks, ReaderSplit, check_ranks, current_reader
from .epochs.seeds import pipe_seed
from .epochs.shuffling import SampleShuffler
from .faces.datapipes import Pipe
from .faces.nodes import stage_node
from .s3.listing import ShardSpec, list_shards
from .s3.shard_index import is_index_url, read_shard_index
from .s3.stats import PipeStats
from .samples.decode import Decoder, SampleDecoding, fields_decoded, pair_decoded
from .samples.decode.failures import GIVE_UP_AFTER
from .samples.grouping import Grouper, SampleGrouper
from .samples.opener import OpenSettings, ShardOpener
from .samples.policy import ErrorCounts, check_on_error
from .samples.tar import TarMembers
from .stage import Stage

__all__ = ["WDS_OPTIONS", "WdsPipe", "wds_node", "wds_pipe"]

#: ``wds_pipe``'s and ``wds_node``'s own keywords (besides the S3Config fields and the backend's options)
WDS_OPTIONS = ("backend", "shuffle", "shuffle_buffer", "decode", "seed", "suffix", "on_error", "config", "rank", "world_size")


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
           world_size: Optional[int] = None, **open_s3_kwargs: Any) -> "WdsSettings":
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
        if isinstance(shards, str) and is_index_url(shards):
            index = read_shard_index(shards, opening.config)
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


class WdsPipe(Pipe):
    """What :func:`wds_pipe` returns: the recommended chain as one pipe, with its ``stats`` and
    ``error_counts``."""

    def __init__(self, settings: WdsSettings, stats: PipeStats, decoded: bool = True) -> None:
        super().__init__(None)
        self.settings = settings
        self.stats = stats
        self.error_counts = ErrorCounts()
        self.decoded = decoded
        self.ranks = settings.ranks

    def _stage(self, clock: EpochClock) -> Stage[Any]:
        return self.settings.chain(clock, self.error_counts, self.stats, self.decoded)

    def _check_loaded(self, state: Dict[str, Any]) -> None:
        order = state["merged"]["order"] if state.get("merged") else stage_states(state.get("stages")).get("order")
        if order is None or "seed" not in order:
            return
        check_order_state(order, self.settings.seed, self.settings.seed_chosen, self.settings.shard_urls)

    def __len__(self) -> int:
        """The samples this rank reads in its next epoch (all of them with one rank), counted by the shard index
        the pipe was made from; ``TypeError`` for shards listed without one."""
        return self.settings.samples_of_rank(self._clock.next_epoch())

    def __repr__(self) -> str:
        return f"WdsPipe({len(self.settings.shard_urls)} shards, backend={self.settings.opening.backend!r})"


def wds_pipe(shards: ShardSpec, **options: Any) -> WdsPipe:
    """The recommended pipe: list shards -> shuffle shards -> split over readers -> ``open_s3`` ->
    ``load_from_tar`` -> ``group_wds_samples`` -> shuffle buffer -> ``decode_png_pair`` (or ``decode_samples``).

    Every sample comes exactly once per epoch under ``DataLoader(pipe, batch_size=None, num_workers=N)``,
    ``StatefulDataLoader``, Lightning and ``DataLoader2(pipe, reading_service=reading_service(N))``, on one
    machine or over the ranks of a ``torch.distributed`` group. The pipe is a plain ``IterableDataset`` with
    ``state_dict()`` / ``load_state_dict()`` (exact resume, see docs/checkpoint.md) that chains like a datapipe
    (``pipe.batch(32).collate()``). Orders change every epoch; ``seed=`` reproduces them.

    Args:
        shards: what :func:`list_shards` accepts: brace pattern, S3 prefix, local folder, or a list of these; or
            a shard index (``s3://bkt/train/index.json``): no LIST request, ``len(pipe)`` is the samples this
            rank reads in its next epoch, and a shard whose size (or ETag, on ``boto3``) is not the index's is
            an error naming it
        backend: the ``open_s3`` backend (``"local"`` for local folders)
        shuffle: ``False`` keeps shard and sample order (evaluation)
        shuffle_buffer: samples held by the per-reader shuffle buffer; ``1`` turns it off
        decode: ``True`` (default): ``decode_png_pair``, the article's PNG image/label pair on its fast path;
            ``"samples"``: ``decode_samples``, every field by its extension, webdataset-style (``jpg`` and other
            images to uint8 tensors, ``cls`` to int, ``txt``, ``json``, ``npy``, the rest left as bytes), for
            ImageNet-style ``KEY.jpg`` + ``KEY.cls`` shards and others; ``False`` yields the raw sample dicts.
            For other options, pass ``False`` and add ``.decode_samples(..., on_error=on_error,
            error_counts=pipe.error_counts)`` to the returned pipe
        seed: an int reproduces the orders by itself: epoch ``k`` (counted by the pipe, from 1) is in an order
            that depends only on ``seed``, ``k`` and the reader (rank and worker of how many), the same in every
            run, under every loader, ``fork`` and ``spawn``. ``None`` (default): a seed drawn when the pipe is
            made (rank 0's in an initialised process group, which every rank then builds the pipe in), so runs
            differ; a checkpoint carries it
        suffix: what a shard's name ends in, as for :func:`list_shards` (default: tar and compressed tars)
        on_error: bad data (a truncated or non-tar shard, a sample repeating a field, a corrupt image):
            ``"raise"`` (default) raises naming the URL and key; ``"skip"`` drops it and goes on (for a
            damaged shard: keeps the samples before the damage, then reads the next shard); ``"warn"`` does
            the same after a ``DataErrorWarning`` and a log record on logger ``"torchdata_s3ext"``. The
            returned pipe's ``error_counts`` counts by kind, added up over the DataLoader workers
        config: a full :class:`S3Config`, for listing and reading
        rank, world_size: this process's rank and the number of ranks, when another launcher than
            ``torch.distributed`` runs them (default: the initialised process group's, if any); DataLoader
            workers split each rank's share as ever
        open_s3_kwargs: any :class:`S3Config` field (``endpoint_url``, ``anonymous``, ``max_attempts``, ...),
            ``open_s3``'s ``cache_dir``, ``cache_limit_bytes``, ``prefetch`` and the backend's options; the
            configuration also serves to list a prefix. An unknown keyword raises ``TypeError`` before anything
            is listed, naming the closest valid one

    The returned pipe's ``stats`` (a :class:`~torchdata_s3ext.s3.stats.PipeStats`) counts the S3 requests of
    the listing and of every process reading the pipe, and ``error_counts`` the bad data they met: read them in
    the main process after (or during) an epoch; ``over_ranks()`` on either adds up a process group's ranks.

    Example:
        >>> from torch.utils.data import DataLoader
        >>> pipe = wds_pipe("s3://bkt/train/shard-{000000..000099}.tar", seed=0)  # doctest: +SKIP
        >>> loader = DataLoader(pipe, batch_size=None, num_workers=4)  # doctest: +SKIP
    """
    stats = PipeStats()  # made before the listing, so that its requests count too
    return WdsPipe(WdsSettings.of(shards, **options), stats)


def wds_node(shards: ShardSpec, *, decode_workers: int = 0, **options: Any) -> Any:
    """The samples of :func:`wds_pipe` as a ``torchdata.nodes.BaseNode`` (torchdata 0.10 and later): the same
    options, chain, orders and guarantees. ``Loader(wds_node(...))`` iterates it, epoch after epoch, and its
    ``state_dict()`` / ``load_state_dict()`` resume exactly; every rank of a ``torch.distributed`` group reads
    its share of each epoch's shards.

    Args:
        shards: as for :func:`wds_pipe`
        decode_workers: threads decoding samples in parallel (a ``torchdata.nodes.ParallelMapper``, in
            order); ``0`` (default) decodes in the reading thread. Reading is concurrent already: each shard
            as ranged GETs in flight, the next shard opened ahead
        options: every keyword of :func:`wds_pipe`

    Example:
        >>> from torchdata.nodes import Batcher, Loader  # doctest: +SKIP
        >>> loader = Loader(Batcher(wds_node("s3://bkt/train/", seed=0), batch_size=32))  # doctest: +SKIP
    """
    pipe = wds_pipe(shards, **options)
    decode, name = pipe.settings.decoder()
    if not decode_workers or decode is None:
        return stage_node(pipe, decode_workers)
    pipe.decoded = False
    return stage_node(pipe, decode_workers, decode, pipe.settings.on_error, pipe.error_counts, GIVE_UP_AFTER, name)
