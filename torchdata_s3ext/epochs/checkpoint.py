"""Checkpoint states: what a reader has delivered of an epoch, in a few numbers, and how to go on from it.

A reader's state (:func:`reader_state`, taken by a face between two samples) holds no sample bytes: the epoch,
the reader (its number of how many), and its chain of stages' states, each nesting its source's. Together they
say where the reader is: its place in its share of the epoch's seeded shard order (``split``, ``order``), the
shard being read and the byte of its next sample (``tar``/``open``, with the sample's number from ``group``),
and the samples held in the shuffle buffer as positions with the number of random draws made (``shuffle``).
None of this grows with the number of shards. ``"stages": None`` is a reader that has delivered nothing of
the epoch.

:func:`merge_states` turns the states of every reader of a job (ranks x workers) into one state that names no
reader: what each had left (its share from where it was, the rest of the shard it was reading, the samples it
held), as a small description of work (:func:`merged_work`) that any number of readers then share
round-robin: every sample not yet delivered comes once.
"""
import pickle
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from .._version import __version__
from ..compat import stateful_loader_epoch_ended, stateful_loader_snapshot
from ..samples.positions import Position, ShardSlice, positions_from_codes

__all__ = [
    "FORMAT", "VERSION", "CheckpointMismatch", "chain_list", "chain_nested", "check_state", "continued", "dataset_states", "listed", "merge_states", "merged_work",
    "reader_state", "refetch_slices", "stage_states",
]

#: the name and version of the state's layout; a state of another version is refused with a clear error
FORMAT = "torchdata_s3ext.checkpoint"
VERSION = 3

#: buffered samples of one shard closer than this are fetched again with one ranged GET
MERGE_GAP = 1 << 20


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


def refetch_slices(positions: Iterable[Position], gap: int = MERGE_GAP) -> List[ShardSlice]:
    """Slices that read the samples at ``positions`` again, and no others: per shard, runs of samples less than
    ``gap`` bytes apart in one ranged read each; a shard without offsets (compressed) read from its start."""
    by_shard: Dict[str, List[Position]] = {}
    for position in positions:
        by_shard.setdefault(position.url, []).append(position)
    slices: List[ShardSlice] = []
    for url, found in by_shard.items():
        found.sort(key=lambda position: position.index)
        if any(position.start is None or position.end is None for position in found):
            slices.append(ShardSlice(url, None, from_index=None, wanted={position.index for position in found}))
            continue
        run = [found[0]]
        for position in found[1:]:
            if position.start - run[-1].end < gap:  # type: ignore[operator]
                run.append(position)
                continue
            slices.append(_run_slice(url, run))
            run = [position]
        slices.append(_run_slice(url, run))
    return slices


def _run_slice(url: str, run: List[Position]) -> ShardSlice:
    return ShardSlice(url, None, start=run[0].start, end=run[-1].end, first_index=run[0].index,  # type: ignore[arg-type]
                      from_index=None, wanted={position.index for position in run})


def merged_work(merged: Mapping[str, Any], epoch_order: Sequence[Any]) -> List[ShardSlice]:
    """The work a merged state describes, in order: its slices, then what each old reader had left of its share
    of ``epoch_order`` (the epoch's shard order), or of the merged work it was itself resumed from."""
    work = [ShardSlice.from_state(part) for part in merged["items"]]
    for share in merged["shares"]:
        reader, readers = share["reader"]
        if "taken" in share:
            work.extend(item for position, item in enumerate(epoch_order)
                        if position >= share["taken"] and position % readers == reader)
        else:
            work.extend(merged_work(share["merged"], epoch_order)[reader::readers][share["next"]:])
    return work


def _left_by(stages: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """What one running reader had left: its share, and the slices of its shard under way and its buffer."""
    split = stages.get("split")
    if "window" in stages:
        raise CheckpointMismatch(
            "merge_states() does not merge the states of a pipe with samples_per_epoch (its readers are each in a "
            "pass of their own): resume it with the same number of ranks and workers, each reader from its own state"
        )
    if split is None:
        raise CheckpointMismatch("merge_states() needs pipes with shard_across_readers(), which says each reader's share")
    share: Dict[str, Any] = {"reader": split["reader"]}
    share.update({"taken": split["taken"]} if "taken" in split else {"merged": split["merged"], "next": split["next"]})
    items: List[ShardSlice] = []
    shuffle = stages.get("shuffle")
    if shuffle is not None and shuffle.get("buffer"):
        items.extend(refetch_slices(positions_from_codes(shuffle["buffer"], shuffle["urls"])))
    reopen = [ShardSlice.from_state(part) for part in stages.get("open", {}).get("reopen", ())]
    group = stages.get("group")
    if reopen and group is not None and group.get("shard") is not None and group["shard"][0] == reopen[0].url:
        skip_before = group["shard"][1]
        reopen[0] = reopen[0].resumed(None if skip_before else reopen[0].start, group["index"])
    items.extend(part for part in reopen if not part.done())
    return {"share": share, "items": [part.to_state() for part in items], "order": split.get("source")}


def merge_states(states: Iterable[Any]) -> Dict[str, Any]:
    """One state for any number of readers, from the states of *every* reader of a job (each rank's, each
    DataLoader worker's; a ``StatefulDataLoader``'s or ``DataLoader2``'s ``state_dict()`` may be passed whole,
    its readers' states are taken out of it). Raises ``CheckpointMismatch`` when a reader is missing or
    repeated, or the states are of different pipes or epochs."""
    readers = [check_state(state) for loader_state in states for state in dataset_states(loader_state)]
    if not readers:
        raise CheckpointMismatch("merge_states() got no reader states")
    if any(state.get("reader") is None for state in readers):
        raise CheckpointMismatch("merge_states() got a merged state; merge the readers' own states")
    layout = readers[0]["reader"][1]
    ids = sorted(state["reader"][0] for state in readers)
    if ids != list(range(layout)) or any(state["reader"][1] != layout for state in readers):
        raise CheckpointMismatch(
            f"merge_states() needs the state of every reader of the job ({layout} readers, ranks x workers), "
            f"got readers {ids}: gather every rank's state (each rank's loader holds its workers')"
        )
    running = [state for state in readers if state["stages"] is not None]
    epoch = max(state["epoch"] for state in running) if running else min(state["epoch"] for state in readers)
    top = running[0]["stages"] if running else None
    ordered = sorted(readers, key=lambda state: state["reader"][0])
    merged = _merged_mix(ordered, epoch, top) if top is not None and top.get("stage") == "mix" else _merged_chain(ordered, epoch)
    return {"format": FORMAT, "version": VERSION, "package": __version__, "epoch": epoch, "reader": None, "merged": merged}


def _merged_chain(readers: List[Dict[str, Any]], epoch: int) -> Optional[Dict[str, Any]]:
    """What the readers (in order) had left of ``epoch`` of one chain, as one description of work; ``None`` when
    none had begun it."""
    shares: List[Dict[str, Any]] = []
    items: List[Any] = []
    order: Optional[Dict[str, Any]] = None
    untouched = True  # every reader is yet to begin the job's epoch
    for state in readers:
        if state["stages"] is None and state["epoch"] == epoch:
            shares.append({"reader": state["reader"], "taken": 0})
        elif state["stages"] is not None and state["epoch"] == epoch:
            left = _left_by(stage_states(state["stages"]))
            order = _same_order(order, left["order"])
            shares.append(left["share"])
            items.extend(left["items"])
            untouched = False
        elif state["stages"] is None and state["epoch"] == epoch + 1:
            untouched = False  # done with the job's epoch: nothing of it left
        else:
            raise CheckpointMismatch(
                f"reader {state['reader'][0]} is at epoch {state['epoch']} while the job is at epoch {epoch}: "
                "the states were not taken at one checkpoint"
            )
    if untouched:
        return None
    known = {key: order[key] for key in ("seed", "shards")} if order is not None else {}
    # (a mixed dataset in a later pass of the epoch has that pass's number as its order's epoch)
    return {"order": {"stage": "order", "epoch": order["epoch"] if order is not None else epoch, **known},
            "items": items, "shares": shares}


def _merged_mix(readers: List[Dict[str, Any]], epoch: int, top: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """What the readers of a mix had left of ``epoch``: each dataset's work merged as one chain's is, with the
    pass each dataset is in (the same in every reader, or the states cannot be merged)."""
    names = sorted(top["sources"])
    mixes = [state["stages"] for state in readers if state["stages"] is not None and state["epoch"] == epoch]
    cycles: Dict[str, int] = {}
    for name in names:
        found = {int(mix["cycles"][name]) for mix in mixes}
        if len(found) > 1:
            raise CheckpointMismatch(
                f"merge_states(): the readers are in different passes of dataset {name!r} (one started it again, "
                "stop='cycle_until_all_exhausted'): resume with the same number of ranks and workers"
            )
        cycles[name] = found.pop() if found else 0
    sources = {}
    for name in names:
        of_source = [dict(state, stages=state["stages"]["sources"][name] if state["stages"] is not None else None)
                     for state in readers]
        sources[name] = _merged_chain(of_source, epoch)
    if all(source is None for source in sources.values()):
        return None
    return {"mix": {"epoch": epoch, "seed": top["seed"], "cycles": cycles}, "sources": sources}


def _same_order(known: Optional[Dict[str, Any]], order: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    if order is None:
        raise CheckpointMismatch("merge_states() needs pipes whose shards come from shuffle_shards() or wds_pipe()")
    for key in ("epoch", "seed", "shards"):
        if known is not None and known[key] != order[key]:
            raise CheckpointMismatch(f"the readers' states differ in {key}: they are not of one pipe and epoch")
    return order


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
