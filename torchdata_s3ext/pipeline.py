"""``wds_pipe`` and ``wds_node``: the recommended chain from a shard spec (or several, mixed by weight) to
shuffled, decoded samples, exactly once: ``order`` -> ``split`` -> ``open`` -> ``tar`` -> ``group`` ->
``shuffle`` -> ``decode`` (per source, then ``mix``), one chain of stages behind two faces (a datapipe that is a
plain ``IterableDataset``, and a ``torchdata.nodes`` node)."""
from typing import Any, Dict, Union

from .epochs.clock import EpochClock
from .faces.datapipes import Pipe
from .faces.nodes import stage_node
from .mixing import MixSettings, pipe_settings
from .s3.listing import ShardSpec
from .s3.stats import PipeStats
from .samples.decode.failures import GIVE_UP_AFTER
from .samples.policy import ErrorCounts
from .settings import WDS_OPTIONS, WdsSettings
from .stage import Stage

__all__ = ["WDS_OPTIONS", "WdsPipe", "wds_node", "wds_pipe"]


class WdsPipe(Pipe):
    """What :func:`wds_pipe` returns: the recommended chain as one pipe, with its ``stats`` and
    ``error_counts``."""

    def __init__(self, settings: Union[WdsSettings, MixSettings], stats: PipeStats, decoded: bool = True) -> None:
        super().__init__(None)
        self.settings = settings
        self.stats = stats
        self.error_counts = ErrorCounts()
        #: a mix's bad data by source (also counted in ``error_counts``)
        self.source_error_counts: Dict[str, ErrorCounts] = (
            settings.source_counts() if isinstance(settings, MixSettings) else {})
        self.decoded = decoded
        self.ranks = settings.ranks

    def _stage(self, clock: EpochClock) -> Stage[Any]:
        if isinstance(self.settings, MixSettings):
            return self.settings.chain(clock, self.error_counts, self.stats, self.decoded, self.source_error_counts)
        return self.settings.chain(clock, self.error_counts, self.stats, self.decoded)

    def _check_loaded(self, state: Dict[str, Any]) -> None:
        self.settings.check_loaded(state)

    def __len__(self) -> int:
        """The samples this rank reads in its next epoch (all of them with one rank), counted by the shard index
        the pipe was made from; ``TypeError`` for shards listed without one."""
        return self.settings.samples_of_rank(self._clock.next_epoch())

    def __repr__(self) -> str:
        return f"WdsPipe({self.settings.describe()})"


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
            an error naming it. A dict of these, ``{"web": ..., "books": ...}``, mixes named datasets: each next
            sample's dataset is drawn by ``weights`` from the seeded stream, every sample carries its dataset's
            name as ``"__source__"``, and each dataset keeps the guarantees of a pipe of its own (see
            docs/mixing.md)
        use_index: with a prefix or folder, read the ``index.json`` in it when there is one (as a shard index
            above), and list the shards only when there is none
        weights: for a dict of datasets, each one's weight (positive numbers, every name); default: in
            proportion to their sample counts where shard indexes give them all, else equal
        stop: when a mix's epoch ends: ``"first_exhausted"`` (default: when the first dataset runs out in a
            reader, so the proportions hold throughout), ``"all_exhausted"`` (a dataset that runs out is no
            longer drawn: every sample of every dataset once), ``"cycle_until_all_exhausted"`` (a dataset that
            runs out starts again in a new order, until every one has run out once)
        samples_per_epoch: epochs of exactly this many samples over all ranks and workers (a rank reads
            ``N // world_size``, the first ``N % world_size`` ranks one more), each going on where the last one
            stopped; every sample comes once before any comes again (datasets that run out start again in a new
            order). With or without a mix
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
    return WdsPipe(pipe_settings(shards, **options), stats)


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
