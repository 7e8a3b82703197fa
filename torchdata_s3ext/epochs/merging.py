"""Merged states: :func:`merge_states` turns the states of every reader of a job (ranks x workers) into one state
that names no reader: what each had left (its share from where it was, the rest of the shard it was reading,
the samples it held), as a small description of work (:func:`merged_work`) that any number of readers then
share round-robin: every sample not yet delivered comes once. A mix's is merged dataset by dataset."""
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from .._version import __version__
from ..samples.positions import Position, ShardSlice, positions_from_codes
from .checkpoint import FORMAT, VERSION, CheckpointMismatch, check_state, dataset_states, stage_states

__all__ = ["MERGE_GAP", "merge_states", "merged_work", "refetch_slices"]

#: buffered samples of one shard closer than this are fetched again with one ranged GET
MERGE_GAP = 1 << 20


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
