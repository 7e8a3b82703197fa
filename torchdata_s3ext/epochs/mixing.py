"""The ``mix`` stage: the samples of several named sources, each next sample's source drawn by weight from a
seeded stream, every sample labelled with its source's name (``__source__``), until the stop rule ends the epoch.

Each source is a chain of its own (order -> split -> open -> tar -> group -> shuffle), so every reader reads
its share of every source's shards and each source keeps its exactly-once guarantee. A source's *pass* is one
reading of all its shards in a seeded order: its ``order`` and ``shuffle`` stages read the pass's number from a
:class:`Passes` the mix sets (the pipe's epoch for the first pass of an epoch; a cycled source's later passes
have numbers of their own, so their orders differ).

Stop rules (the names follow ``torchdata.nodes``' ``StopCriteria``):

- ``"first_exhausted"``: the epoch ends when the first source runs out (in this reader); the proportions hold
  for the whole epoch, and the other sources' unread samples wait for no one (the next epoch reads every source
  anew);
- ``"all_exhausted"``: a source that runs out is no longer drawn (the others' weights keep their ratios); the
  epoch ends when all have run out: every sample of every source once;
- ``"cycle_until_all_exhausted"``: a source that runs out starts its next pass, in a new order, until every
  source has run out at least once;
- ``"forever"`` (what ``samples_per_epoch`` uses underneath): every source cycles, and the epoch is cut by the
  ``window`` stage.

The state is the draws made, each source's pass and whether it has run out, and each source's own state: a
resume draws on from the same number and every source goes on where it was.
"""
import bisect
import itertools
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..stage import Stage, StateUnavailable
from .checkpoint import CheckpointMismatch
from .clock import EpochClock
from .readers import Ranks, current_reader
from .seeds import Draws, epoch_seed

__all__ = ["STOP_RULES", "CountsInto", "Mix", "Passes", "check_weights", "pass_number"]

STOP_RULES = ("first_exhausted", "all_exhausted", "cycle_until_all_exhausted")
#: the pass numbers of cycles: pass ``c`` of epoch ``e`` is ``e + c * CYCLE`` (the first pass is the epoch's)
CYCLE = 1 << 40
_UNIT = 1 << 53


def pass_number(epoch: int, cycle: int) -> int:
    """The number a source's ``order`` and ``shuffle`` stages seed pass ``cycle`` (0: the first) of ``epoch`` with."""
    return epoch + cycle * CYCLE


class Passes:
    """What a source's ``order`` and ``shuffle`` stages read as their epoch (``epoch``): the source's pass,
    set by the mix before it resets the source."""

    def __init__(self) -> None:
        self.epoch = 0


class CountsInto:
    """Counts bad data into a source's ``ErrorCounts`` and the pipe's at once."""

    def __init__(self, *counts: Any) -> None:
        self.counts = counts

    def add(self, kind: str) -> None:
        for counts in self.counts:
            counts.add(kind)


def check_weights(names: Sequence[str], weights: Optional[Mapping[str, Any]],
                  sample_counts: Mapping[str, Optional[int]]) -> Dict[str, float]:
    """The weights of the sources ``names``, checked: ``weights`` as given (every name, each a positive number),
    or by default in proportion to the sources' sample counts where every one is known, else equal."""
    if weights is None:
        counts = [sample_counts.get(name) for name in names]
        if all(count for count in counts):
            return {name: float(count) for name, count in zip(names, counts)}  # type: ignore[arg-type]
        return {name: 1.0 for name in names}
    if not isinstance(weights, Mapping):
        raise TypeError(f"weights must map each source's name to a positive number, got {type(weights).__name__}")
    missing, unknown = [name for name in names if name not in weights], [name for name in weights if name not in names]
    if missing or unknown:
        raise ValueError(f"weights must name every source ({', '.join(map(repr, names))}) and no other: "
                         + "; ".join(part for part in (missing and f"missing {missing}", unknown and f"unknown {unknown}") if part))
    checked: Dict[str, float] = {}
    for name in names:
        weight = weights[name]
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0 or weight == float("inf"):
            raise ValueError(f"the weight of source {name!r} must be a positive, finite number, got {weight!r}")
        checked[name] = float(weight)
    return checked


class Mix(Stage[Dict[str, Any]]):
    """The ``mix`` stage (see the module docstring) over ``sources`` (name -> chain), whose ``order`` and
    ``shuffle`` stages read their pass from ``passes[name]``; ``label``: add ``__source__`` to each sample."""

    kind = "mix"

    def __init__(self, sources: Mapping[str, Stage[Any]], passes: Mapping[str, Passes], weights: Mapping[str, float],
                 stop: str, seed: int, clock: EpochClock, seed_chosen: bool = True, ranks: Ranks = None,
                 label: bool = True) -> None:
        super().__init__(None)
        if stop not in STOP_RULES + ("forever",):
            raise ValueError(f"stop must be one of {', '.join(map(repr, STOP_RULES))}, got {stop!r}")
        self.sources, self.passes, self.names = dict(sources), dict(passes), list(sources)
        self.weights = [float(weights[name]) for name in self.names]
        self.stop, self.seed, self.seed_chosen, self.clock, self.ranks, self.label = stop, seed, seed_chosen, clock, ranks, label
        self.epoch = 0
        self._cycles: Dict[str, int] = {}
        self._given: Dict[str, int] = {}  # samples of each source's current pass
        self._out: List[str] = []  # ran out, no longer drawn
        self._ran_out: List[str] = []  # ran out at least once this epoch
        self._ended = False
        self._draws: Optional[Draws] = None
        self._drawn_from: Optional[Any] = None  # (sources out, the sources drawn from, their weights' bounds)

    def reset(self, state: Optional[Dict[str, Any]] = None) -> None:
        if state is not None and state.get("unavailable"):
            raise StateUnavailable(f"this pipe cannot be checkpointed: {state['unavailable']}")
        if state is None:
            # a mix under a window draws one stream over its whole run, its sources' passes counted from 1
            self.epoch = 1 if self.stop == "forever" else self.clock.epoch
            self._cycles, self._out, self._ran_out, self._ended = {name: 0 for name in self.names}, [], [], False
            self._given = {name: 0 for name in self.names}
        else:
            self._take(state)
        self._drawn_from = None
        for name in self.names:
            self.passes[name].epoch = pass_number(self.epoch, self._cycles[name])
            self.sources[name].reset(None if state is None else state["sources"].get(name))
        self._draws = Draws(epoch_seed("mix", self.seed, self.epoch, current_reader(self.ranks)), _UNIT,
                            0 if state is None else int(state["draws"]))

    def _take(self, state: Dict[str, Any]) -> None:
        if sorted(state["sources"]) != sorted(self.names):
            raise CheckpointMismatch(f"the checkpoint mixes sources {sorted(state['sources'])}, this pipe "
                                     f"{sorted(self.names)}")
        if state["seed"] != self.seed:
            if self.seed_chosen:
                raise CheckpointMismatch(f"the checkpoint was taken with seed={state['seed']!r}, this pipe has seed={self.seed!r}")
            self.seed = state["seed"]
        self.epoch, self._cycles = int(state["epoch"]), {name: int(cycle) for name, cycle in state["cycles"].items()}
        self._out, self._ran_out, self._ended = list(state["out"]), list(state["ran_out"]), bool(state["ended"])
        self._given = {name: int(given) for name, given in state["given"].items()}

    def next(self) -> Dict[str, Any]:
        while not self._ended:
            name = self._draw()
            if name is None:
                break
            try:
                sample = self.sources[name].next()
            except StopIteration:
                self._ran_out_of(name)
                continue
            self._given[name] += 1
            if self.label:
                sample["__source__"] = name
            return sample
        self._ended = True
        raise StopIteration

    def _draw(self) -> Optional[str]:
        """The next sample's source, drawn by weight among those still drawn; ``None`` when none is."""
        if self._drawn_from is None or self._drawn_from[0] != len(self._out):
            names = [name for name in self.names if name not in self._out]
            bounds = list(itertools.accumulate(self.weights[self.names.index(name)] for name in names))
            self._drawn_from = (len(self._out), names, bounds)  # kept until another source runs out
        _, names, bounds = self._drawn_from
        if not names:
            return None
        point = self._draws.next() / _UNIT * bounds[-1]  # type: ignore[union-attr]
        return names[min(bisect.bisect_right(bounds, point), len(names) - 1)]

    def _ran_out_of(self, name: str) -> None:
        """``name``'s pass has ended: the epoch ends, the source is no longer drawn, or it starts its next pass
        (never one after a pass that gave this reader nothing: cycling it would never end)."""
        if name not in self._ran_out:
            self._ran_out.append(name)
        if self.stop == "first_exhausted":
            self._ended = True
        elif self.stop == "all_exhausted" or not self._given[name]:
            self._out.append(name)
            self._ended = self._ended or (self.stop == "cycle_until_all_exhausted" and len(self._ran_out) == len(self.names))
        elif self.stop == "cycle_until_all_exhausted" and len(self._ran_out) == len(self.names):
            self._ended = True
        else:
            self._cycles[name] += 1
            self._given[name] = 0
            self.passes[name].epoch = pass_number(self.epoch, self._cycles[name])
            self.sources[name].reset(None)

    def state(self) -> Dict[str, Any]:
        return {"stage": self.kind, "epoch": self.epoch, "seed": self.seed, "draws": self._draws.draws if self._draws else 0,
                "cycles": dict(self._cycles), "given": dict(self._given), "out": list(self._out), "ran_out": list(self._ran_out),
                "ended": self._ended, "sources": {name: source.state() for name, source in self.sources.items()}}

    def close(self) -> None:
        for source in self.sources.values():
            source.close()

    def state_over(self, split_state: Dict[str, Any]) -> Dict[str, Any]:
        """The state that takes up a merged state (:func:`~.merging.merge_states`): each source's chain
        takes its share of what that source had left; the draws start again."""
        merged = split_state["merged"]
        mix, left = merged["mix"], merged["sources"]
        sources = {name: None if left.get(name) is None else
                   self.sources[name].state_over({"stage": "split", "merged": left[name], "next": 0})
                   for name in self.names}
        cycles = {name: int(mix["cycles"].get(name, 0)) for name in self.names}
        return {"stage": self.kind, "epoch": mix["epoch"], "seed": mix["seed"], "draws": 0, "cycles": cycles,
                "given": {name: 0 for name in self.names}, "out": [],
                "ran_out": [name for name, cycle in cycles.items() if cycle], "ended": False, "sources": sources}

    def reading_of(self, items: Any) -> Stage[Any]:
        raise StateUnavailable("a mix of sources reads its samples again through each source's own chain")
