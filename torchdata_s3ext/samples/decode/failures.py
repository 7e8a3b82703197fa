"""One pass of ``decode_png_pair`` (or ``decode_samples``) under ``on_error="skip"`` or ``"warn"``: the shards none of whose samples
decoded, and a pass in which nothing decodes.

Skipping bad samples one by one says nothing under ``"skip"``, so a JPEG dataset would give empty epochs in
silence. Two rules (docs/decoding.md):

- A shard of which every sample failed is reported once, at the end of the pass, with a
  :class:`DataErrorWarning` and a log record on logger ``"torchdata_s3ext"`` (under ``"skip"`` too), naming
  the shard, the count and the first error. At the end, because a shuffle buffer before the decoder
  interleaves the samples of several shards: only the end of the pass says a shard had no more.
- A pass raises ``ValueError`` when nothing has decoded yet and ``give_up_after`` samples have failed, from
  two shards or more (one bad shard alone is the warning's), or when it ends with failures and nothing
  decoded. Every shard failing means the data's format or the keys are wrong, not a shard.

Only counts and messages are kept per shard (not the errors, whose tracebacks hold the samples' bytes), and
each sample costs a set insertion.
"""
import warnings
from typing import Dict, List, Optional, Set

from ..policy import DataErrorWarning, logger

__all__ = ["GIVE_UP_AFTER", "BadSample", "FailureWatch", "check_give_up_after"]

#: The default ``give_up_after``: a hundred samples is more than a shuffle buffer needs to mix two shards,
#: and little time lost before saying that nothing decodes.
GIVE_UP_AFTER = 100


def check_give_up_after(give_up_after: Optional[int]) -> Optional[int]:
    if give_up_after is not None and (type(give_up_after) is not int or give_up_after < 1):
        raise ValueError(f"give_up_after must be a positive int or None (never give up), not {give_up_after!r}")
    return give_up_after


def hint(message: str) -> str:
    """What a first error suggests about the whole data set."""
    if "not a PNG (bad signature)" in message:
        return " (the data may be JPEG or another format, not PNG)"
    if "must match exactly one field, matches []" in message:
        return " (do image_key and label_key name fields the samples have?)"
    return ""


class FailureWatch:
    """The failures of one pass: call :meth:`decoded` or :meth:`failed` per sample, :meth:`end` after the last."""

    def __init__(self, give_up_after: Optional[int], pipe_name: str = "decode_png_pair") -> None:
        self.give_up_after = give_up_after
        self.pipe_name = pipe_name  # what the messages start with
        self.failures = 0
        self.first_error: Optional[Exception] = None
        self._decoded_shards: Set[Optional[str]] = set()
        self._failing_shards: Dict[Optional[str], List] = {}  # shard URL -> [failures, first error's message]

    def decoded(self, shard_url: Optional[str]) -> None:
        self._decoded_shards.add(shard_url)

    def failed(self, shard_url: Optional[str], error: Exception) -> None:
        """Raises ValueError when ``give_up_after`` failures from two shards or more came before any decode."""
        self.failures += 1
        shard = self._failing_shards.get(shard_url)
        if shard is None:
            self._failing_shards[shard_url] = [1, str(error)]
        else:
            shard[0] += 1
        if self.first_error is None:
            self.first_error = error
        if (self.give_up_after is not None and self.failures >= self.give_up_after and not self._decoded_shards
                and len(self._failing_shards) > 1):
            shards = len(self._failing_shards)
            raise self._nothing_decodes(f"the first {self.failures} samples, from {shards} shards, all failed")

    def end(self) -> None:
        """Warns of each shard that decoded nothing; raises ValueError if the whole pass decoded nothing."""
        if self.failures and not self._decoded_shards and self.give_up_after is not None:
            raise self._nothing_decodes(f"all {self.failures} samples of the pass failed")
        for shard_url, (failures, first) in self._failing_shards.items():
            if shard_url not in self._decoded_shards:
                message = (f"{self.pipe_name}: all {failures} samples of shard {shard_url!r} failed to decode and "
                           f"were skipped; the first: {first}{hint(first)}")
                warnings.warn(message, DataErrorWarning, stacklevel=3)
                logger.warning("%s", message)

    def _nothing_decodes(self, what: str) -> ValueError:
        first = str(self.first_error)
        error = ValueError(f"{self.pipe_name}: {what} to decode and nothing decoded; the first error: {first}"
                           f"{hint(first)}; pass give_up_after=None to go on regardless")
        error.__cause__ = self.first_error
        return error


class BadSample(Exception):
    """A sample a decoder could not decode: ``error`` (naming the sample) and the ``kind`` it counts as."""

    def __init__(self, error: Exception, kind: str) -> None:
        super().__init__(error)
        self.error = error
        self.kind = kind
