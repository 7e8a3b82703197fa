"""``sagemaker_pipe``: the samples of a SageMaker Pipe Mode channel, one FIFO per epoch, as ``wds_pipe`` gives
those of S3 shards (see docs/pipe-mode.md)."""
from typing import Any, Dict, Iterator, Optional, Sequence

import torch.utils.data

from .epochs.clock import EpochClock
from .faces.datapipes import Pipe
from .faces.decoding import PngPairDecoderIterDataPipe
from .faces.epoch_pipes import SampleShufflerIterDataPipe
from .sagemaker_fifo import DEFAULT_INPUT_DIR, DEFAULT_TIMEOUT, fifo_path, open_fifo, second_reader_error
from .samples.concatenated import archive_samples
from .samples.grouping import check_required_fields
from .samples.policy import ErrorCounts, check_on_error
from .stage import Stage

__all__ = ["PipeModeChannelIterDataPipe", "sagemaker_pipe"]

#: what ``__url__`` starts with: ``pipe-mode:<fifo path>#<archive ordinal>``
URL_SCHEME = "pipe-mode:"


def _check_one_reader(path: str) -> None:
    worker_info = torch.utils.data.get_worker_info()
    if worker_info is not None and worker_info.num_workers > 1:
        raise second_reader_error(path, f"{worker_info.num_workers} DataLoader workers (num_workers > 1)")


class _ChannelSamples(Stage[Dict[str, Any]]):
    """The ``pipe_mode`` stage: the samples of the channel's FIFO of the epoch. A FIFO cannot be read again, so
    its state says only that the epoch cannot be resumed midway."""

    kind = "pipe_mode"

    def __init__(self, channel: "PipeModeChannelIterDataPipe", clock: EpochClock) -> None:
        super().__init__(None)
        self.channel = channel
        self.clock = clock
        self._samples: Optional[Iterator[Dict[str, Any]]] = None

    def reset(self, state: Optional[Dict[str, Any]] = None) -> None:
        self.close()
        if state is not None:
            raise ValueError("a SageMaker Pipe Mode channel cannot be resumed midway through an epoch: its FIFO is read once")
        self._samples = self.channel._epoch_samples(self.clock.epoch - 1)

    def next(self) -> Dict[str, Any]:
        if self._samples is None:
            raise StopIteration
        return next(self._samples)

    def state(self) -> Dict[str, Any]:
        return {"stage": self.kind, "unavailable": "a SageMaker Pipe Mode channel's FIFO cannot be read again"}

    def close(self) -> None:
        samples, self._samples = self._samples, None
        if samples is not None:
            samples.close()  # type: ignore[attr-defined]


class PipeModeChannelIterDataPipe(Pipe):
    r"""
    Reads one SageMaker Pipe Mode channel: each iteration, an epoch, opens the channel's FIFO for that epoch,
    ``<input_dir>/<channel>_<epoch>``, and yields the WebDataset samples of the tar archives the agent writes
    into it, one after another, to the end of the stream. Samples are dicts ``{"__key__": sample_key,
    "__url__": "pipe-mode:<fifo path>#<archive ordinal>", "<field>": bytes, ...}``.

    Args:
        channel: the channel's name in the training job (``"train"``)
        epoch: the FIFO's epoch; ``None`` (default): counted by this pipe, 0 for its first iteration, then 1,
            2, ..., as SageMaker names the FIFOs (under a ``DataLoader`` too, whose worker iterates a copy)
        input_dir: where SageMaker puts the channels
        required_fields: fields every sample must have, as for ``group_wds_samples()``
        on_error: ``"raise"`` (default), ``"skip"`` or ``"warn"``, as for ``load_wds_shards()``: a damaged
            archive (a cut, a damaged header, not a tar) counts as ``bad_shards``; under ``"skip"`` its samples
            before the damage are kept and the next archive is read
        error_counts: where to count; a new :class:`ErrorCounts` by default
        timeout: seconds to wait for the FIFO to appear and for the agent to start writing

    Note:
        A FIFO has one reader. Iterated in a ``DataLoader`` worker of several (``num_workers > 1``), or while
        another reader (another rank on the machine) has the FIFO open, this raises a ``ValueError`` naming
        the FIFO: give each worker or rank a channel of its own, or read with ``num_workers`` 0 or 1.

    Example:
        >>> pipe = PipeModeChannelIterDataPipe("train")  # doctest: +SKIP
        >>> next(iter(pipe))["__url__"]  # doctest: +SKIP
        'pipe-mode:/opt/ml/input/data/train_0#0'
    """

    def __init__(
        self,
        channel: str,
        epoch: Optional[int] = None,
        input_dir: str = DEFAULT_INPUT_DIR,
        required_fields: Sequence[str] = (),
        on_error: str = "raise",
        error_counts: Optional[ErrorCounts] = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        fifo_path(channel, 0 if epoch is None else epoch, input_dir)  # checks channel and epoch
        super().__init__(None)
        self.required_fields = check_required_fields(required_fields)
        self.on_error: str = check_on_error(on_error)
        self.error_counts: ErrorCounts = error_counts if error_counts is not None else ErrorCounts()
        self.channel = channel
        self.epoch = epoch
        self.input_dir = input_dir
        self.timeout = float(timeout)

    def _stage(self, clock: EpochClock) -> Stage[Any]:
        return _ChannelSamples(self, clock)

    def _epoch_samples(self, counted: int) -> Iterator[Dict[str, Any]]:
        path = fifo_path(self.channel, counted if self.epoch is None else self.epoch, self.input_dir)
        _check_one_reader(path)
        with open_fifo(path, self.timeout) as stream:
            stream_url = URL_SCHEME + path
            yield from archive_samples(stream_url, stream, self.required_fields, self.on_error, self.error_counts)


def sagemaker_pipe(
    channel: str,
    epoch: Optional[int] = None,
    input_dir: str = DEFAULT_INPUT_DIR,
    *,
    decode: bool = True,
    shuffle: bool = True,
    shuffle_buffer: int = 1000,
    seed: Optional[int] = None,
    on_error: str = "raise",
    timeout: float = DEFAULT_TIMEOUT,
) -> Pipe:
    """The pipe for a SageMaker Pipe Mode channel: the channel's FIFO of the epoch ->
    concatenated tar archives -> WebDataset samples -> shuffle buffer -> ``decode_png_pair``, each iteration
    the next epoch's FIFO, every sample of it exactly once.

    Args:
        channel: the channel's name in the training job (its FIFOs are ``<input_dir>/<channel>_<epoch>``)
        epoch: read that epoch's FIFO every iteration; ``None`` (default): the pipe counts, 0, 1, 2, ...
        input_dir: where SageMaker puts the channels
        decode: decode the PNG image/label pair; ``False`` yields the raw sample dicts
        shuffle: ``False`` keeps the order the agent writes (which follows the channel's ``ShuffleConfig``)
        shuffle_buffer: samples held by the shuffle buffer (``shuffle_samples``); ``1`` turns it off
        seed: as for ``wds_pipe``: an int makes epoch ``k``'s buffer order depend on ``seed`` and ``k`` only
        on_error: bad data, as for ``wds_pipe``: a damaged archive in the stream (``bad_shards``), a bad sample
            or a corrupt PNG; ``"skip"``/``"warn"`` keep a damaged archive's samples before the damage and read
            the next archive. An agent that stops mid-archive leaves that archive damaged, the ones before it
            all read. The returned pipe's ``error_counts`` counts by kind
        timeout: seconds to wait for each epoch's FIFO to appear and for the agent to start writing

    Raises:
        ValueError: when iterated by one of several DataLoader workers, or while another reader has the FIFO
            open: a FIFO has one reader (see docs/pipe-mode.md); or the path is not a FIFO
        FileNotFoundError, TimeoutError: no FIFO, or no writer, within ``timeout``

    Example:
        >>> from torch.utils.data import DataLoader
        >>> pipe = sagemaker_pipe("train", seed=0)  # doctest: +SKIP
        >>> loader = DataLoader(pipe, batch_size=None, num_workers=1)  # one reader per FIFO  # doctest: +SKIP
    """
    check_on_error(on_error)
    error_counts = ErrorCounts()
    pipe: Pipe = PipeModeChannelIterDataPipe(
        channel, epoch, input_dir, on_error=on_error, error_counts=error_counts, timeout=timeout
    )
    if shuffle and shuffle_buffer > 1:
        pipe = SampleShufflerIterDataPipe(pipe, buffer_size=shuffle_buffer, seed=seed)
    if decode:
        pipe = PngPairDecoderIterDataPipe(pipe, on_error=on_error, error_counts=error_counts)
    pipe.error_counts = error_counts
    return pipe
