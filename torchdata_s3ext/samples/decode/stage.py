"""The ``decode`` stage: each sample of its source decoded by one function, bad data handled by ``on_error``;
and :func:`decode_one`, the same for one sample (what parallel decoders call, in any thread)."""
from typing import Any, Callable, Dict, NamedTuple, Optional, Union

from ...stage import Stage
from ..policy import ErrorCounts, handle_data_error
from .failures import BadSample, FailureWatch

__all__ = ["Decoder", "Failed", "Watched", "decode_one"]


class Failed(NamedTuple):
    """A sample that did not decode (already handled by ``on_error`` and counted): its shard and the error."""

    url: Optional[str]
    error: Exception


def decode_one(sample: Dict[str, Any], decode: Callable[[Dict[str, Any]], Dict[str, Any]], on_error: str,
               error_counts: ErrorCounts) -> Union[Dict[str, Any], Failed]:
    """``decode(sample)``, or, for bad data (:class:`~.failures.BadSample`), a :class:`Failed` once ``on_error``
    has been applied (it raises under ``"raise"``) and the error counted."""
    try:
        return decode(sample)
    except BadSample as bad:
        handle_data_error(bad.error, kind=bad.kind, on_error=on_error, error_counts=error_counts)
        return Failed(sample.get("__url__"), bad.error)


class Watched:
    """The outcomes of one pass, in order, given to a :class:`~.failures.FailureWatch` (under ``"skip"`` and
    ``"warn"``): :meth:`passed` says whether an outcome is a sample to give, :meth:`ended` at the pass's end."""

    def __init__(self, on_error: str, give_up_after: Optional[int], pipe_name: str) -> None:
        self._watch = FailureWatch(give_up_after, pipe_name) if on_error != "raise" else None

    def passed(self, outcome: Union[Dict[str, Any], Failed]) -> bool:
        if isinstance(outcome, Failed):
            if self._watch is not None:
                self._watch.failed(outcome.url, outcome.error)
            return False
        if self._watch is not None:
            self._watch.decoded(outcome.get("__url__"))
        return True

    def ended(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.end()


class Decoder(Stage[Dict[str, Any]]):
    """Each sample as ``decode`` gives it; one for which it raises :class:`~.failures.BadSample` is handled by
    ``on_error`` and counted, and under ``"skip"``/``"warn"`` a :class:`~.failures.FailureWatch` warns of (or
    raises on) shards and passes in which nothing decodes. One sample in, one (or none) out: its state is its
    source's."""

    kind = "decode"

    def __init__(self, source: Stage[Dict[str, Any]], decode: Callable[[Dict[str, Any]], Dict[str, Any]], on_error: str,
                 error_counts: ErrorCounts, give_up_after: Optional[int], pipe_name: str) -> None:
        super().__init__(source)
        self.decode = decode
        self.on_error = on_error
        self.error_counts = error_counts
        self.give_up_after = give_up_after
        self.pipe_name = pipe_name
        self._watched = Watched(on_error, give_up_after, pipe_name)

    def reset(self, state: Optional[Dict[str, Any]] = None) -> None:
        super().reset(state)
        self._watched = Watched(self.on_error, self.give_up_after, self.pipe_name)

    def next(self) -> Dict[str, Any]:
        while True:
            try:
                sample = self.source.next()  # type: ignore[union-attr]
            except StopIteration:
                self._watched.ended()
                raise
            outcome = decode_one(sample, self.decode, self.on_error, self.error_counts)
            if self._watched.passed(outcome):
                return outcome  # type: ignore[return-value]
