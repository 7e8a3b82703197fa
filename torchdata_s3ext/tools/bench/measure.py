"""What the benchmark measures of a pass over the shards, besides time: the payload bytes of its batches, the
peak memory of the process and its descendants, and their CPU seconds."""
import resource
import threading
from typing import Any

from .methods import ENCODED_BYTES

__all__ = ["PeakMemory", "cpu_seconds", "payload_bytes"]


def payload_bytes(batch: Any) -> int:
    """Bytes of sample data in a collated batch: every ``bytes`` value, however the batch nests them; for
    decoded samples, the encoded sizes they keep in ``ENCODED_BYTES`` (their tensors are not counted)."""
    if isinstance(batch, (bytes, bytearray)):
        return len(batch)
    if isinstance(batch, dict):
        return sum(_encoded_total(value) if key == ENCODED_BYTES else payload_bytes(value) for key, value in batch.items())
    if isinstance(batch, (list, tuple)):
        return sum(payload_bytes(value) for value in batch)
    return 0


def _encoded_total(sizes: Any) -> int:
    import torch

    # collated, a batch's sizes are one tensor; uncollated, an int or a list
    return int(torch.as_tensor(sizes).sum())


class PeakMemory:
    """Samples the summed RSS of this process and its descendants (DataLoader workers, CLI children)."""

    def __init__(self, interval: float = 0.1) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        total = 0
        for process in [self._process] + self._process.children(recursive=True):
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue  # a worker that exited between listing and reading
        self.peak_bytes = max(self.peak_bytes, total)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def __enter__(self) -> "PeakMemory":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def cpu_seconds() -> float:
    """CPU seconds of this process and its waited-for descendants."""
    # RUSAGE_CHILDREN covers waited-for descendants: DataLoader workers and the CLI processes they ran.
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )
