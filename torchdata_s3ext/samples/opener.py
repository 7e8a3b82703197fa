"""The ``open`` stage: the shard URLs (or slices) of its source, opened through the S3 layer's one way in
(:func:`~torchdata_s3ext.s3.opening.open_shard`), the next one opened ahead. It holds no S3 logic: how a shard
is opened is :class:`~torchdata_s3ext.s3.settings.OpenSettings` (re-exported here for the faces)."""
import collections
import functools
from typing import Any, Deque, Dict, Iterable, List, Optional, Tuple

from ..s3.opening import OpenAhead, open_ahead, open_shard
from ..s3.settings import OpenSettings
from ..s3.stats import PipeStats
from ..stage import SOURCE, IterableStage, Stage
from .positions import ShardSlice
from .tar import Shard

__all__ = ["OpenSettings", "ShardOpener"]


class ShardOpener(Stage[Shard]):
    """The ``open`` stage: the shard URLs (or :class:`~.positions.ShardSlice`) of its source, opened.

    With ``settings.prefetch``, the next shard is opened on a thread of its own once the current one has
    requested its last part (at once for a stream that reads no parts ahead), at most one shard ahead; its
    errors, and those of the source met while looking ahead, are raised when its shard is reached; a shard
    opened ahead and never handed out is closed. No thread exists before the first shard is handed out.

    Its state goes on after the last shard handed out: the source's state then, and ``"reopen"``: slices to
    open before the source's next ones (how the ``tar`` stage goes on inside a shard)."""

    kind = "open"

    def __init__(self, source: Stage[Any], settings: OpenSettings, stats: Optional[PipeStats] = None) -> None:
        super().__init__(source)
        self.settings = settings
        self.stats = stats if stats is not None else PipeStats()
        self._reopen: Deque[ShardSlice] = collections.deque()
        self._handed: Optional[Dict[str, Any]] = None
        self._ahead: Optional[Tuple[Any, OpenAhead]] = None

    def reset(self, state: Optional[Dict[str, Any]] = None) -> None:
        self._discard_ahead()
        self._reopen = collections.deque(ShardSlice.from_state(part) for part in (state or {}).get("reopen", ()))
        super().reset(state)
        self._handed = None

    def next(self) -> Shard:
        if self._ahead is not None:
            following, ahead = self._ahead
            self._ahead = None
            stream = ahead.result()  # the error of opening it, or of the source while looking ahead
            part, after = following
        else:
            part, after = self._pull()  # StopIteration: the epoch's end
            stream = _open(part, self.settings)
        self._handed = after
        if self.settings.prefetch:
            self._open_ahead(stream)
        self.stats.add_this_process()  # the previous shard's requests, for the main process to see
        return Shard(part, stream)

    def state(self) -> Dict[str, Any]:
        if self._handed is None:
            self._handed = self._now()
        source, reopen = self._handed
        return {"stage": self.kind, SOURCE: source, "reopen": reopen}

    def close(self) -> None:
        self._discard_ahead()
        self.stats.add_this_process()
        super().close()

    def reading_of(self, items: Iterable[Any]) -> "ShardOpener":
        return ShardOpener(IterableStage(list(items)), self.settings, self.stats)

    def _now(self) -> Tuple[Dict[str, Any], List[Any]]:
        return self.source.state(), [part.to_state() for part in self._reopen]  # type: ignore[union-attr]

    def _pull(self) -> Tuple[ShardSlice, Tuple[Dict[str, Any], List[Any]]]:
        """The next slice to open, and the state after it."""
        if self._reopen:
            part = self._reopen.popleft()
        else:
            item = self.source.next()  # type: ignore[union-attr]
            part = ShardSlice.of(item if isinstance(item, str) else str(item))
        return part, self._now()

    def _open_ahead(self, current: Any) -> None:
        try:
            following = self._pull()
        except StopIteration:
            return
        except Exception as error:  # the source's failure: raised when the shard it would have given is reached
            following, ahead = None, open_ahead(functools.partial(_raise, error), current)
        else:
            ahead = open_ahead(functools.partial(_open, following[0], self.settings), current)
        self._ahead = (following, ahead)

    def _discard_ahead(self) -> None:
        if self._ahead is not None:
            _, ahead = self._ahead
            self._ahead = None
            ahead.discard()


def _raise(error: BaseException) -> Any:
    raise error


def _open(part: ShardSlice, settings: OpenSettings) -> Any:
    return open_shard(part.url, settings, start=part.start, end=part.end)
