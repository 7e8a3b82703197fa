"""Stages: the steps of the reading, each a plain iterator that carries its own state (the contract of
torchdata.nodes, without torchdata).

A stage holds its source (the stage before it; the first stage holds a list or any iterable) and offers:

- ``reset(state=None)``: start over, from the start of the next epoch (``None``) or from what :meth:`state`
  returned; a stage hands its source the source's part of the state, and nothing else;
- ``next()`` (also ``__next__``): the next item; ``StopIteration`` at the end of the epoch;
- ``state()``: a small dict of plain values (picklable, no sample bytes) from which ``reset`` goes on right
  after the last item ``next()`` returned; it holds its source's state under ``"source"``. What a checkpoint
  needs, a failing shard's URL, a sample's position: all travel down the chain as values, never by looking
  sideways or upstream;
- ``close()``: let go of what the stage holds (open streams, threads), and of what its source holds.

The faces (the datapipes, a ``torchdata.nodes`` node, the plain dataset) are thin shells over one chain of
stages. A stage's state says where it is, never what is left: its size does not grow with the dataset.
"""
from typing import Any, Dict, Generic, Iterable, Iterator, Optional, TypeVar

__all__ = ["SOURCE", "IterableStage", "Stage", "StateUnavailable"]

T = TypeVar("T")

#: the key under which a stage's state holds its source's
SOURCE = "source"


class StateUnavailable(RuntimeError):
    """A state was asked of, or loaded into, a chain that cannot give or take one; the message says why."""


class Stage(Generic[T], Iterator[T]):
    """One step of the reading (see the module docstring). Subclasses implement :meth:`next`, and
    :meth:`reset` / :meth:`state` when they hold more than their source does."""

    #: what the stage does, in a word (``state()`` carries it, so that a state names the stage it is of)
    kind = "stage"

    def __init__(self, source: Optional["Stage[Any]"] = None) -> None:
        self.source = source

    def reset(self, state: Optional[Dict[str, Any]] = None) -> None:
        if self.source is not None:
            self.source.reset(None if state is None else state.get(SOURCE))

    def next(self) -> T:
        raise NotImplementedError(type(self).__name__)

    def __next__(self) -> T:
        return self.next()

    def __iter__(self) -> Iterator[T]:
        return self

    def state(self) -> Dict[str, Any]:
        return {"stage": self.kind, SOURCE: self.source.state() if self.source is not None else None}

    def close(self) -> None:
        if self.source is not None:
            self.source.close()

    def state_over(self, split_state: Dict[str, Any]) -> Dict[str, Any]:
        """The state that starts every stage of the chain afresh but the split over readers, which takes
        ``split_state`` (how a state merged from several readers is loaded: only the split knows its share)."""
        if self.source is None:
            raise StateUnavailable(
                "this chain has no shard_across_readers() step, which is where a merged state is taken up"
            )
        return {"stage": self.kind, SOURCE: self.source.state_over(split_state)}

    def reading_of(self, items: Iterable[Any]) -> "Stage[Any]":
        """The same reading (same opener, tar reader and grouping settings) over other shard slices: how a
        resumed shuffle buffer reads its samples again."""
        if self.source is None:
            raise StateUnavailable("the samples cannot be read again: no shard opener upstream")
        return self.source.reading_of(items)


class IterableStage(Stage[T]):
    """The first stage over any iterable (a list, a foreign datapipe). Its state counts the items given: to go
    on, the iterable is read again and that many items skipped, which is right for an iterable that gives the
    same items in the same order each time (a list does)."""

    kind = "iterable"

    def __init__(self, iterable: Iterable[T]) -> None:
        super().__init__(None)
        self.iterable = iterable
        self._iterator: Optional[Iterator[T]] = None
        self._given = 0

    def reset(self, state: Optional[Dict[str, Any]] = None) -> None:
        self._iterator = iter(self.iterable)
        self._given = 0
        for _ in range(0 if state is None else int(state["given"])):
            next(self._iterator)
            self._given += 1

    def next(self) -> T:
        if self._iterator is None:
            self.reset()
        item = next(self._iterator)  # type: ignore[arg-type]
        self._given += 1
        return item

    def state(self) -> Dict[str, Any]:
        return {"stage": self.kind, "given": self._given}

    def close(self) -> None:
        self._iterator = None
