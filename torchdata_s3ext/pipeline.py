"""``wds_pipe``: the one-call recommended pipe from a shard spec to shuffled, decoded samples, exactly once."""
from typing import Any, Optional, Sequence, Union

from torchdata.datapipes.iter import IterableWrapper, IterDataPipe

from .epochs import readers, shuffling  # noqa: F401  (registers shuffle_shards, shard_across_readers, shuffle_samples)
from .samples.opener import split_s3_settings  # (importing it registers open_s3)
from ._config import S3Config
from .s3.listing import ShardSpec, list_shards
from .s3.stats import PipeStats
from .samples.policy import ErrorCounts, check_on_error

__all__ = ["wds_pipe"]


def wds_pipe(
    shards: ShardSpec,
    *,
    backend: str = "auto",
    shuffle: bool = True,
    shuffle_buffer: int = 1000,
    decode: Union[bool, str] = True,
    seed: Optional[int] = None,
    suffix: Optional[Union[str, Sequence[str]]] = None,
    on_error: str = "raise",
    config: Optional[S3Config] = None,
    **open_s3_kwargs: Any,
) -> IterDataPipe:
    """The recommended pipe: list shards -> shuffle shards -> split over readers -> ``open_s3`` ->
    ``load_from_tar`` -> ``group_wds_samples`` -> shuffle buffer -> ``decode_png_pair`` (or ``decode_samples``).

    Every sample comes exactly once per epoch under a plain ``torch.utils.data.DataLoader(pipe, batch_size=None,
    num_workers=N)`` and under ``DataLoader2(pipe, reading_service=reading_service(N))``, on one machine or
    over the ranks of a ``torch.distributed`` group. Orders change every epoch and follow the loader's seed
    (``DataLoader2.seed(n)``, or ``DataLoader(generator=torch.Generator().manual_seed(n))``).

    Args:
        shards: what :func:`list_shards` accepts: brace pattern, S3 prefix, local folder, or a list of these
        backend: the ``open_s3`` backend (``"local"`` for local folders)
        shuffle: ``False`` keeps shard and sample order (evaluation)
        shuffle_buffer: samples held by the per-reader shuffle buffer; ``1`` turns it off
        decode: ``True`` (default): ``decode_png_pair``, the article's PNG image/label pair on its fast path;
            ``"samples"``: ``decode_samples``, every field by its extension, webdataset-style (``jpg`` and other
            images to uint8 tensors, ``cls`` to int, ``txt``, ``json``, ``npy``, the rest left as bytes), for
            ImageNet-style ``KEY.jpg`` + ``KEY.cls`` shards and others; ``False`` yields the raw sample dicts.
            For other options, pass ``False`` and add ``.decode_samples(..., on_error=on_error,
            error_counts=pipe.error_counts)`` to the returned pipe
        seed: an int reproduces the orders by itself: epoch ``k`` (counted by the returned pipe, from 1) is in
            an order that depends only on ``seed``, ``k`` and the reader (rank and worker of how many), the same
            in every run and rank, under ``DataLoader`` with or without ``generator=``, under ``DataLoader2``,
            for ``fork`` and ``spawn``; the loader's seed is then not used, and each epoch still has a fresh
            order. ``None`` (default): the loader's per-epoch seed decides, so only a seeded loader reproduces
            (``DataLoader(generator=torch.Generator().manual_seed(n))``, ``DataLoader2.seed(n)``)
        suffix: what a shard's name ends in, as for :func:`list_shards` (default: tar and compressed tars)
        on_error: bad data (a truncated or non-tar shard, a sample repeating a field, a corrupt image):
            ``"raise"`` (default) raises naming the URL and key; ``"skip"`` drops it and goes on (for a
            damaged shard: keeps the samples before the damage, then reads the next shard); ``"warn"`` does
            the same after a ``DataErrorWarning`` and a log record on logger ``"torchdata_s3ext"``. The
            returned pipe's ``error_counts`` counts by kind, added up over the DataLoader workers.
            Under ``"raise"`` shards go through torchdata's ``load_from_tar``, otherwise ``load_wds_shards``
        config: a full :class:`S3Config`, for listing and reading
        open_s3_kwargs: any :class:`S3Config` field (``endpoint_url``, ``anonymous``,
            ``max_attempts``, ...) and the backend's options, as for ``open_s3``; the configuration also serves
            to list a prefix. An unknown keyword raises ``TypeError`` before anything is listed

    The returned pipe's ``stats`` (a :class:`~torchdata_s3ext.s3.stats.PipeStats`) counts the S3 requests of
    the listing and of every process reading the pipe, and ``error_counts`` the bad data they met: read them in
    the main process after (or during) an epoch; ``over_ranks()`` on either adds up a process group's ranks.

    Example:
        >>> from torch.utils.data import DataLoader
        >>> pipe = wds_pipe("s3://bkt/train/shard-{000000..000099}.tar", seed=0)  # doctest: +SKIP
        >>> loader = DataLoader(pipe, batch_size=None, num_workers=4)  # no generator= needed  # doctest: +SKIP
    """
    from . import samples  # noqa: F401  (registers group_wds_samples, load_wds_shards, decode_png_pair, decode_samples)

    check_on_error(on_error)
    if decode not in (True, False, "samples"):
        raise ValueError(f"decode must be True (the PNG pair), 'samples' (every field) or False, not {decode!r}")
    error_counts = ErrorCounts()
    stats = PipeStats()  # made before the listing, so that its requests count too

    # Listing and reading must agree on the endpoint, credentials and attempts: one config serves both.
    config_fields, backend_options = split_s3_settings(backend, open_s3_kwargs)
    config = S3Config.merged(config, **config_fields)
    shard_urls = list_shards(shards, suffix=suffix, config=config)
    pipe = (
        IterableWrapper(shard_urls, deepcopy=False)
        .shuffle_shards(seed=seed, shuffle=shuffle)
        .shard_across_readers()
        .open_s3(backend=backend, config=config, stats=stats, **backend_options)
    )
    # load_from_tar raises out of its generator on a damaged shard, ending the pipe: fine for "raise" only.
    if on_error == "raise":
        pipe = pipe.load_from_tar().group_wds_samples(on_error=on_error, error_counts=error_counts)
    else:
        pipe = pipe.load_wds_shards(on_error=on_error, error_counts=error_counts)
    # Always there, also without shuffling: it is where the pipe is checkpointed (state_dict / load_state_dict).
    pipe = pipe.shuffle_samples(buffer_size=shuffle_buffer if shuffle else 1, seed=seed, shuffle=shuffle)
    if decode == "samples":
        pipe = pipe.decode_samples(on_error=on_error, error_counts=error_counts)
    elif decode:
        pipe = pipe.decode_png_pair(on_error=on_error, error_counts=error_counts)
    pipe.error_counts = error_counts
    pipe.stats = stats
    return pipe
