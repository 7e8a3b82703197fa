"""The plain-dataset face: a chain of stages as a ``torch.utils.data.IterableDataset`` with ``state_dict()`` and
``load_state_dict()``, so that ``DataLoader``, ``StatefulDataLoader`` (any ``num_workers``, ``fork`` or
``spawn``) and Lightning take it as it is.

Each iteration is an epoch of the pipe's own count (``epochs.clock``). The chain is built in the process that
iterates (a DataLoader worker builds its own), and reset at each iteration: from the start of the epoch, or
from a state loaded with :meth:`StageDataset.load_state_dict`: a reader's own state (what ``state_dict()``
gave, as ``StatefulDataLoader`` keeps one per worker), or one merged from every reader of a job
(:func:`~torchdata_s3ext.epochs.merge_states`), which any number of readers then share.
"""
import os
from typing import Any, Dict, Iterator, Optional, Tuple

from torch.utils.data import IterableDataset, get_worker_info

from ..epochs.checkpoint import check_state, continued, dataset_states, listed, reader_state, unavailable_state
from ..epochs.clock import EpochClock, Resume
from ..epochs.readers import Ranks, current_reader
from ..stage import Stage, StateUnavailable

__all__ = ["StageDataset"]


class _Reading:
    """One iteration in this process: its epoch, and whether it has ended."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.ended = False


class StageDataset(IterableDataset):
    """A plain ``IterableDataset`` over a chain of stages (see the module docstring). Subclasses build the chain
    (:meth:`_build`) and may shape each item (:meth:`_output`)."""

    #: the ``(rank, world_size)`` the pipe was given, instead of the process group's
    ranks: Ranks = None

    def __init__(self) -> None:
        self._clock = EpochClock()
        self._loaded: Optional[Tuple[Resume, Dict[str, Any]]] = None
        self._forget_process()

    def _forget_process(self) -> None:
        self._chain: Optional[Stage[Any]] = None
        self._chain_pid: Optional[int] = None
        self._reading: Optional[_Reading] = None

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        for name in ("_chain", "_chain_pid", "_reading"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._forget_process()

    # --- what subclasses give --------------------------------------------------------------------------

    def _build(self, clock: EpochClock) -> Stage[Any]:
        raise NotImplementedError(type(self).__name__)

    def _output(self, item: Any) -> Any:
        return item

    def _check_loaded(self, state: Dict[str, Any]) -> None:
        """Raises ``CheckpointMismatch`` at once for a state that cannot fit this pipe, where the pipe can tell
        without reading (the chain checks the rest when it takes the state up)."""

    # --- iterating -------------------------------------------------------------------------------------

    def _process_chain(self) -> Stage[Any]:
        if self._chain is None or self._chain_pid != os.getpid():
            self._chain, self._chain_pid = self._build(self._clock), os.getpid()
        return self._chain

    def _begin(self, loaded: Optional[Tuple[Resume, Dict[str, Any]]] = None) -> _Reading:
        """Begin (or join, in a DataLoader worker) the next iteration: its epoch from the clock, its chain reset
        from ``loaded`` (or the state loaded before) if the iteration goes on from it."""
        chain = self._process_chain()
        loaded = loaded if loaded is not None else self._loaded
        epoch, resumed = self._clock.begin(loaded[0] if loaded is not None else None)
        stages = None
        if resumed:
            stages = self._stages_of(chain, loaded[1])  # type: ignore[index]
            if loaded[0].local:  # type: ignore[index]
                self._loaded = None  # a worker's own state: this iteration's alone
        self._reading = _Reading(epoch)
        chain.reset(stages)
        return self._reading

    @staticmethod
    def _stages_of(chain: Stage[Any], state: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        if state.get("reader") is not None or "merged" not in state:
            return state.get("stages")
        if state["merged"] is None:
            return None  # merged before the epoch began: all of it
        return chain.state_over({"stage": "split", "merged": state["merged"], "next": 0})

    def _next(self) -> Any:
        reading, chain = self._reading, self._chain
        try:
            item = chain.next()  # type: ignore[union-attr]
        except StopIteration:
            reading.ended = True  # type: ignore[union-attr]
            raise
        return self._output(item)

    def __iter__(self) -> Iterator[Any]:
        return self._items()

    def _items(self) -> Iterator[Any]:
        # A generator: the iteration begins at its first item, so that a state loaded after iter()
        # (StatefulDataLoader loads it into the iterator it has just made) is the one it goes on from, and an
        # iterator made and dropped unread (as StatefulDataLoader does at an epoch's end) begins no epoch.
        reading = self._begin()
        try:
            while True:
                if self._reading is not reading:
                    raise RuntimeError("this iteration was replaced by a newer one of the same pipe in this process")
                try:
                    yield self._next()
                except StopIteration:
                    return
        finally:
            if self._reading is reading and self._chain is not None and self._chain_pid == os.getpid():
                self._chain.close()

    # --- checkpoints -----------------------------------------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        """What this reader has delivered of the epoch under way, or, between epochs, that the next one is to
        come: a few kilobytes of numbers, never sample bytes (see ``docs/checkpoint.md``). Taken between two
        items, in the process that iterates the pipe (``StatefulDataLoader`` asks each of its workers)."""
        reading, reader = self._reading, current_reader(self.ranks)
        if reading is None:
            return self._state_before_reading(reader)
        if reading.ended and get_worker_info() is None:
            return reader_state(reading.epoch + 1, reader, continued(self._chain.state()))  # type: ignore[union-attr]
        try:
            stages = self._chain.state()  # type: ignore[union-attr]
        except StateUnavailable as error:
            return unavailable_state(str(error))
        if isinstance(stages, dict) and _unavailable(stages):
            return unavailable_state(_unavailable(stages))  # type: ignore[arg-type]
        return reader_state(reading.epoch, reader, stages, ended=reading.ended)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Go on from ``state`` at the next iteration (in this process, or in the DataLoader workers copying
        this pipe): a reader's own (``state_dict()``, as ``StatefulDataLoader`` keeps them), a
        ``StatefulDataLoader``'s whole ``state_dict()`` of a single reader, or :func:`merge_states`'s (any
        number of readers then share what is left). A state of another pipe raises ``CheckpointMismatch``."""
        states = dataset_states(state)
        if len(states) != 1:
            raise ValueError(
                f"the state holds {len(states)} readers' states: load each into its own reader (StatefulDataLoader "
                "does), or merge them with merge_states() first"
            )
        state = check_state(states[0])
        self._check_loaded(state)
        self._loaded = (Resume.loaded(state["epoch"]), state)

    def _state_before_reading(self, reader: Tuple[int, int]) -> Dict[str, Any]:
        """The state of a reader that has not begun reading in this process: the state loaded, as this reader's
        own (of a merged one, its share), or, without one, that the next epoch is to come."""
        if self._loaded is None:
            return reader_state(self._clock.next_epoch(), reader, None)
        state = self._loaded[1]
        if state.get("reader") is not None or not state.get("merged"):
            return listed(dict(state, reader=list(reader)) if state.get("reader") is None else dict(state))
        chain = self._process_chain()
        self._clock.look_at(state["epoch"])
        chain.reset(self._stages_of(chain, state))
        return reader_state(state["epoch"], reader, chain.state())


def _unavailable(stages: Dict[str, Any]) -> Optional[str]:
    while isinstance(stages, dict):
        if stages.get("unavailable"):
            return stages["unavailable"]
        stages = stages.get("source")  # type: ignore[assignment]
    return None
