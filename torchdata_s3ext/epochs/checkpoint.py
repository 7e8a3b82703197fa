"""Checkpoint states: what a reader has delivered of an epoch, in a few numbers, and how to go on from it.

A reader's state (:func:`reader_state`, taken by a face between two samples) holds no sample bytes: the epoch,
the reader (its number of how many), and its chain of stages' states, each nesting its source's. Together they
say where the reader is: its place in its share of the epoch's seeded shard order (``split``, ``order``), the
shard being read and the byte of its next sample (``tar``/``open``, with the sample's number from ``group``),
and the samples held in the shuffle buffer as positions with the number of random draws made (``shuffle``).
None of this grows with the number of shards. ``"stages": None`` is a reader that has delivered nothing of
the epoch.

:mod:`.merging` makes one state of every reader's, for another number of readers.
"""
import pickle
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .._version import __version__
from ..compat import stateful_loader_epoch_ended, stateful_loader_snapshot

__all__ = [
    "FORMAT", "VERSION", "CheckpointMismatch", "chain_list", "chain_nested", "check_state", "continued", "dataset_states",
    "listed", "reader_state", "stage_states", "unavailable_state",
]

#: the name and version of the state's layout; a state of another version is refused with a clear error
FORMAT = "torchdata_s3ext.checkpoint"
VERSION = 3


class CheckpointMismatch(RuntimeError):
    """A state that does not fit the pipe it is loaded into (other shards, another seed, another layout).

    Not a ``ValueError``: raised upstream of the tar readers, it must never pass for a damaged shard."""


def reader_state(epoch: int, reader: Sequence[int], stages: Optional[Dict[str, Any]], ended: bool = False) -> Dict[str, Any]:
    """One reader's state (see the module docstring) of its chain's nested ``stages``; ``ended``: it has
    delivered all of its epoch. The chain is kept as a list of its stages' states, outermost first
    (:func:`chain_list`): a loader that diffs states key by key at every step (``StatefulDataLoader``) then
    walks a few keys, not every stage's."""
    return {"format": FORMAT, "version": VERSION, "package": __version__, "epoch": int(epoch),
            "reader": list(reader), "stages": chain_list(stages), "ended": ended}


def chain_list(stages: Optional[Mapping[str, Any]]) -> Optional[List[Dict[str, Any]]]:
    """A chain's nested state as the list of its stages' states, outermost first, each without its source's
    (a mix's sources each a list of their own); ``None`` stays ``None``. (Stages' states are plain dicts: the
    check is ``dict``'s, which is quicker than ``Mapping``'s, at every step of a loader that snapshots.)"""
    if stages is None:
        return None
    listed: List[Dict[str, Any]] = []
    stage: Any = stages
    while isinstance(stage, dict):
        entry = dict(stage)
        inner = entry.get("source")
        if isinstance(inner, dict):
            del entry["source"]
        if isinstance(entry.get("sources"), dict):
            entry["sources"] = {name: chain_list(source) for name, source in entry["sources"].items()}
        listed.append(entry)
        stage = inner if isinstance(inner, dict) else None
    return listed


def chain_nested(listed: Optional[Sequence[Mapping[str, Any]]]) -> Optional[Dict[str, Any]]:
    """The nested state :func:`chain_list` made ``listed`` of."""
    if listed is None:
        return None
    nested: Optional[Dict[str, Any]] = None
    for entry in reversed(listed):
        stage = dict(entry)
        if isinstance(stage.get("sources"), dict):
            stage["sources"] = {name: chain_nested(source) for name, source in stage["sources"].items()}
        if nested is not None:
            stage["source"] = nested
        nested = stage
    return nested


def listed(state: Dict[str, Any]) -> Dict[str, Any]:
    """A reader state as kept (the chain a list) from one as used (the chain nested)."""
    return dict(state, stages=chain_list(state.get("stages")))


def unavailable_state(reason: str) -> Dict[str, Any]:
    """What a reader that cannot be checkpointed says instead of a state; loading it raises ``reason``."""
    return {"format": FORMAT, "version": VERSION, "package": __version__, "unavailable": reason}


def check_state(state: Any) -> Dict[str, Any]:
    """``state`` if it is a checkpoint state of this version, else ``CheckpointMismatch`` saying what it is."""
    if not isinstance(state, Mapping) or state.get("format") != FORMAT:
        found = type(state).__name__ if not isinstance(state, Mapping) else f"keys {sorted(state)[:6]}"
        raise CheckpointMismatch(
            f"not a torchdata_s3ext checkpoint state ({found}); pass what the pipe's state_dict() or "
            "merge_states() returned (a StatefulDataLoader's own state_dict goes to its load_state_dict)"
        )
    if state.get("version") != VERSION:
        raise CheckpointMismatch(
            f"checkpoint state version {state.get('version')!r} (written by torchdata-s3ext {state.get('package')}) "
            f"cannot be read by torchdata-s3ext {__version__}, which reads version {VERSION}; resume with the "
            "version that wrote it, or start the epoch again"
        )
    if state.get("unavailable"):
        raise CheckpointMismatch(f"this pipe cannot be checkpointed: {state['unavailable']}")
    if state.get("stages") is not None and not isinstance(state["stages"], (list, tuple)):
        raise CheckpointMismatch(f"not a reader state of version {VERSION}: its stages are not a list")
    return dict(state, stages=chain_nested(state.get("stages")))


def stage_states(stages: Optional[Mapping[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """The states in a chain's nested state, by the kind of stage (``"shuffle"``, ``"group"``, ``"split"``, ...)."""
    found: Dict[str, Dict[str, Any]] = {}
    while isinstance(stages, Mapping):
        found.setdefault(stages.get("stage", "?"), dict(stages))
        if stages.get("unavailable"):
            raise CheckpointMismatch(f"this pipe cannot be checkpointed: {stages['unavailable']}")
        stages = stages.get("source")
    return found


def dataset_states(state: Any) -> List[Dict[str, Any]]:
    """The reader states inside ``state``: a reader's or merged state itself, or those a ``StatefulDataLoader``
    (``num_workers`` 0 or more) or our ``DataLoader2`` reading service keeps in its ``state_dict()``."""
    if isinstance(state, Mapping) and state.get("format") == FORMAT:
        return [dict(state)]
    if isinstance(state, Mapping) and "reading_service_state" in state:  # DataLoader2.state_dict()
        return dataset_states(pickle.loads(state["reading_service_state"]))
    snapshot = stateful_loader_snapshot(state)
    if snapshot is not None:  # StatefulDataLoader, workers
        if snapshot.lagging:
            raise CheckpointMismatch(
                "the StatefulDataLoader state lags its last batches (snapshot_every_n_steps > 1): its readers' states "
                "cannot be merged exactly; use snapshot_every_n_steps=1"
            )
        readers = [_worker_state(worker) for worker in snapshot.workers]
        if snapshot.epoch_ended:  # the epoch ended in every worker: the next one is to come
            readers = [_before_next(reader) for reader in readers]
        return readers
    if isinstance(state, Mapping) and "fetcher_state" in state:  # StatefulDataLoader, in the main process
        reader = _worker_state(state)
        return [_before_next(reader) if stateful_loader_epoch_ended(state) else reader]
    raise CheckpointMismatch(
        f"no torchdata_s3ext reader state found in {type(state).__name__}"
        + (f" with keys {sorted(state)[:8]}" if isinstance(state, Mapping) else "")
        + ": is the loader's dataset one of this package's pipes (wds_pipe's, or a chain ending in one of ours)?"
    )


def _worker_state(snapshot: Mapping[str, Any]) -> Dict[str, Any]:
    """The pipe's state in a ``StatefulDataLoader`` worker's snapshot (its dataset's state)."""
    state = snapshot.get("dataset_state")
    if state is None:
        state = (snapshot.get("fetcher_state") or {}).get("dataset_iter_state")
    return dataset_states(state)[0]


def _before_next(state: Dict[str, Any]) -> Dict[str, Any]:
    """The state of a reader whose loader has ended the epoch (its last snapshot may be from before it found
    nothing was left), as the state before the next one."""
    if state.get("stages") is not None:
        return dict(state, epoch=state["epoch"] + 1, stages=chain_list(continued(chain_nested(state["stages"]))),
                    ended=False)
    return state


def continued(stages: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """The state that begins the epoch after the one ``stages`` ended: ``None`` (from the start) for a chain
    whose epochs are each read whole; for one with a ``window`` stage (``samples_per_epoch``), the same
    sources' states, from where they stopped."""
    if not isinstance(stages, Mapping):
        return None
    if stages.get("stage") == "window":
        return dict(stages, epoch=int(stages["epoch"]) + 1, taken=0)
    inner = continued(stages.get("source"))
    return None if inner is None else dict(stages, source=inner)
