"""The ``torchdata.nodes`` face (torchdata 0.10 and later): a chain of stages as a ``BaseNode``, whose
``get_state()`` is the chain's checkpoint state and whose ``reset(state)`` goes on from one; and parallel
decoding as a ``ParallelMapper`` of threads after it."""
import functools
import importlib.metadata
from typing import Any, Callable, Dict, Optional, Tuple

from ..epochs.checkpoint import check_state
from ..epochs.clock import Resume
from ..samples.decode.stage import Watched, decode_one
from .dataset import StageDataset

__all__ = ["stage_node"]

try:
    from torchdata.nodes import BaseNode, ParallelMapper
except ImportError:  # torchdata 0.9 has no nodes
    BaseNode = ParallelMapper = None


def _require_nodes() -> None:
    if BaseNode is None:
        try:
            installed = f"torchdata {importlib.metadata.version('torchdata')}"
        except importlib.metadata.PackageNotFoundError:
            installed = "no torchdata"
        raise ModuleNotFoundError(
            f"wds_node needs torchdata.nodes (torchdata 0.10 or later), and this environment has {installed}: "
            "`pip install 'torchdata>=0.10'`, or read with wds_pipe under DataLoader, StatefulDataLoader or DataLoader2"
        )


if BaseNode is not None:

    class StageNode(BaseNode):
        """A :class:`~.dataset.StageDataset`'s chain as a node: ``reset(None)`` begins the pipe's next epoch,
        ``reset(state)`` goes on from a state ``get_state()`` gave; a state taken after the last sample of its
        epoch goes on with the next epoch (as ``StatefulDataLoader`` does), which the node finds by reading one
        sample ahead (``Loader`` would otherwise keep the state from before that epoch ended)."""

        def __init__(self, dataset: StageDataset) -> None:
            super().__init__()
            self.dataset = dataset
            self._ahead: Optional[Tuple[Any, Dict[str, Any]]] = None  # (a sample read ahead, the state before it)

        def reset(self, initial_state: Optional[Dict[str, Any]] = None) -> None:
            super().reset(initial_state)
            self._ahead = None
            if initial_state is None:
                self.dataset._begin()
                return
            state = check_state(initial_state)
            self.dataset._begin(loaded=(Resume.loaded(state["epoch"]), state))
            before = self.dataset.state_dict()
            try:
                self._ahead = (self.dataset._next(), before)
            except StopIteration:  # nothing was left of that epoch
                self.dataset._begin()

        def next(self) -> Any:
            if self._ahead is not None:
                sample, self._ahead = self._ahead[0], None
                return sample
            return self.dataset._next()

        def get_state(self) -> Dict[str, Any]:
            return self._ahead[1] if self._ahead is not None else self.dataset.state_dict()

    class DecodedNode(BaseNode):
        """After a ``ParallelMapper`` of :func:`~torchdata_s3ext.samples.decode.stage.decode_one`: the decoded
        samples, the ones that failed left out and watched as the ``decode`` stage watches them."""

        SOURCE_KEY = "source"

        def __init__(self, source: Any, on_error: str, give_up_after: Optional[int], pipe_name: str) -> None:
            super().__init__()
            self.source = source
            self._watching = (on_error, give_up_after, pipe_name)
            self._watched = Watched(*self._watching)

        def reset(self, initial_state: Optional[Dict[str, Any]] = None) -> None:
            super().reset(initial_state)
            self.source.reset(None if initial_state is None else initial_state[self.SOURCE_KEY])
            self._watched = Watched(*self._watching)

        def next(self) -> Any:
            while True:
                try:
                    outcome = next(self.source)
                except StopIteration:
                    self._watched.ended()
                    raise
                if self._watched.passed(outcome):
                    return outcome

        def get_state(self) -> Dict[str, Any]:
            return {self.SOURCE_KEY: self.source.state_dict()}


def stage_node(dataset: StageDataset, decode_workers: int = 0, decoder: Optional[Callable[..., Any]] = None,
               on_error: str = "raise", error_counts: Any = None, give_up_after: Optional[int] = None,
               pipe_name: str = "decode") -> Any:
    """``dataset``'s chain as a node; with ``decode_workers`` and a ``decoder``, the samples decoded by that many
    threads, in order (``dataset``'s chain then must not decode itself)."""
    _require_nodes()
    if not isinstance(decode_workers, int) or isinstance(decode_workers, bool) or decode_workers < 0:
        raise ValueError(f"decode_workers must be an int >= 0, got {decode_workers!r}")
    node = StageNode(dataset)
    if decode_workers == 0 or decoder is None:
        return node
    decode = functools.partial(decode_one, decode=decoder, on_error=on_error, error_counts=error_counts)
    mapped = ParallelMapper(node, map_fn=decode, num_workers=decode_workers, in_order=True, method="thread")
    return DecodedNode(mapped, on_error, give_up_after, pipe_name)

