"""Checkpoint states: what a reader has delivered of an epoch, in a few kilobytes, and how to go on from it.

A reader's state (:func:`reader_state`, taken by ``shuffle_samples`` between two samples) holds no sample bytes:

- the epoch, the seed it was ordered with, and a digest of the shard list, to refuse a state of another pipe;
- ``remaining``: the reader's work not yet read, as shard slices: the shard being read from the byte after the
  last sample taken (its next member header), then the shards not yet opened;
- ``buffer``: the samples taken but not yet delivered (in the shuffle buffer), as positions (shard, number,
  bytes), in buffer order, with the buffer's random state, so that the same reader continues in the very
  order it would have had.

:func:`merge_states` turns the states of every reader of a job (ranks x workers) into one state that names no
reader: the union of their remaining work and buffered samples. Any number of readers can take it up, each
its share (:func:`resumed_items`): every sample not yet delivered comes once.

A reader that had not started the epoch ("before") has delivered nothing of it: its whole share of the epoch
is left, and is found again from the epoch's shard order when the state is loaded.
"""
import hashlib
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .._version import __version__
from ..samples.positions import Position, ShardSlice

__all__ = [
    "FORMAT", "CheckpointMismatch", "check_state", "dataset_states", "expand_merged", "merge_states", "refetch_slices",
    "resumed_items", "shards_digest",
]

#: the name and version of the state's layout; a state of another version is refused with a clear error
FORMAT = "torchdata_s3ext.checkpoint"
VERSION = 1

#: buffered samples of one shard closer than this are fetched again with one ranged GET
MERGE_GAP = 1 << 20


class CheckpointMismatch(RuntimeError):
    """A state that does not fit the pipe it is loaded into (other shards, another seed, another layout).

    Not a ``ValueError``: raised upstream of the tar readers, it must never pass for a damaged shard."""


def shards_digest(shard_urls: Iterable[str]) -> str:
    """A digest of the set of shard URLs (any order)."""
    digest = hashlib.sha256()
    for url in sorted(str(url) for url in shard_urls):
        digest.update(url.encode() + b"\0")
    return digest.hexdigest()[:16]


def _encode_positions(positions: Sequence[Position]) -> Dict[str, Any]:
    shards: Dict[str, int] = {}
    samples = [[shards.setdefault(p.shard, len(shards)), p.index, p.start, p.end] for p in positions]
    return {"shards": list(shards), "samples": samples}


def decode_positions(encoded: Mapping[str, Any]) -> List[Position]:
    shards = encoded["shards"]
    return [Position(shards[number], index, start, end) for number, index, start, end in encoded["samples"]]


def reader_state(
    *, epoch: int, status: str, seed: Optional[int], loader_seed: Optional[int], shards: Tuple[int, str],
    reader: Tuple[int, int], remaining: Sequence[ShardSlice] = (), buffer: Sequence[Position] = (),
    rng: Any = None, draining: bool = False,
) -> Dict[str, Any]:
    """One reader's state (see the module docstring); ``status`` is ``"running"`` or ``"before"``."""
    return {
        "format": FORMAT, "version": VERSION, "package": __version__,
        "epoch": epoch, "status": status, "seed": seed, "loader_seed": loader_seed,
        "shard_count": shards[0], "shard_digest": shards[1], "reader": list(reader),
        "remaining": [part.to_state() for part in remaining],
        "buffer": _encode_positions(buffer), "rng": rng, "draining": draining,
    }


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
    return dict(state)


def check_fits(state: Mapping[str, Any], *, seed: Optional[int], shards: Tuple[int, str]) -> None:
    """``CheckpointMismatch`` unless ``state`` was taken from a pipe with this seed and these shards."""
    if state["seed"] != seed:
        raise CheckpointMismatch(f"the checkpoint was taken with seed={state['seed']!r}, this pipe has seed={seed!r}")
    if not state["shard_count"]:
        return  # taken before any reader listed its shards: nothing of the epoch was delivered
    if (state["shard_count"], state["shard_digest"]) != tuple(shards):
        raise CheckpointMismatch(
            f"the checkpoint was taken over {state['shard_count']} shards (digest {state['shard_digest']}), this pipe "
            f"lists {shards[0]} (digest {shards[1]}): other shards, or shards added or removed since"
        )


def refetch_slices(positions: Iterable[Position], gap: int = MERGE_GAP) -> List[ShardSlice]:
    """Slices that read the samples at ``positions`` again, and no others: per shard, runs of samples less than
    ``gap`` bytes apart in one ranged read each; a shard without offsets (compressed) read from its start."""
    by_shard: Dict[str, List[Position]] = {}
    for position in positions:
        by_shard.setdefault(position.shard, []).append(position)
    slices: List[ShardSlice] = []
    for shard, found in by_shard.items():
        found.sort(key=lambda position: position.index)
        if any(position.start is None or position.end is None for position in found):
            slices.append(ShardSlice(shard, from_index=None, wanted={position.index for position in found}))
            continue
        run = [found[0]]
        for position in found[1:]:
            if position.start - run[-1].end < gap:  # type: ignore[operator]
                run.append(position)
                continue
            slices.append(_run_slice(shard, run))
            run = [position]
        slices.append(_run_slice(shard, run))
    return slices


def _run_slice(shard: str, run: List[Position]) -> ShardSlice:
    return ShardSlice(shard, start=run[0].start, end=run[-1].end, first_index=run[0].index,  # type: ignore[arg-type]
                      from_index=None, wanted={position.index for position in run})


def merge_states(states: Iterable[Any]) -> Dict[str, Any]:
    """One state for any number of readers, from the states of *every* reader of a job (each rank's, each
    DataLoader worker's; a ``StatefulDataLoader``'s or ``DataLoader2``'s ``state_dict()`` may be passed whole,
    its readers' states are taken out of it). Raises ``CheckpointMismatch`` when a reader is missing or
    repeated, or the states are of different pipes or epochs."""
    readers = [check_state(state) for loader_state in states for state in dataset_states(loader_state)]
    if not readers:
        raise CheckpointMismatch("merge_states() got no reader states")
    first = readers[0]
    if first["reader"] is None:
        raise CheckpointMismatch("merge_states() got a merged state; merge the readers' own states")
    layout = first["reader"][1]
    ids = sorted(state["reader"][0] for state in readers)
    if ids != list(range(layout)) or any(state["reader"][1] != layout for state in readers):
        raise CheckpointMismatch(
            f"merge_states() needs the state of every reader of the job ({layout} readers, ranks x workers), "
            f"got readers {ids}: gather every rank's state (each rank's loader holds its workers')"
        )
    listed = [state for state in readers if state["shard_count"]] or readers  # a reader not begun knows none
    for key, among in (("seed", readers), ("loader_seed", readers), ("shard_count", listed), ("shard_digest", listed)):
        if any(state[key] != among[0][key] for state in among):
            raise CheckpointMismatch(f"the readers' states differ in {key}: they are not of one pipe and epoch")
    # "before e" means epoch e-1 is done: the job's epoch is the latest one under way.
    running = {state["epoch"] for state in readers if state["status"] == "running"}
    epoch = max(running) if running else min(state["epoch"] for state in readers)
    remaining: List[Any] = []
    pending: List[Position] = []
    not_started: List[int] = []
    for state in sorted(readers, key=lambda state: state["reader"][0]):
        if state["status"] == "running" and state["epoch"] == epoch:
            remaining.extend(state["remaining"])
            pending.extend(decode_positions(state["buffer"]))
        elif state["status"] == "before" and state["epoch"] == epoch:
            not_started.append(state["reader"][0])
        elif not (state["status"] == "before" and state["epoch"] == epoch + 1):
            raise CheckpointMismatch(
                f"reader {state['reader'][0]} is at epoch {state['epoch']} ({state['status']}) while the job is at "
                f"epoch {epoch}: the states were not taken at one checkpoint"
            )
    status = "running" if running or len(not_started) < layout else "before"
    merged = reader_state(
        epoch=epoch, status=status, seed=first["seed"], loader_seed=first["loader_seed"],
        shards=(listed[0]["shard_count"], listed[0]["shard_digest"]), reader=(0, 1), buffer=pending,
    )
    merged.update(reader=None, remaining=remaining, layout=layout, not_started=not_started)
    return merged


def resumed_items(state: Mapping[str, Any], epoch_order: Sequence[str], reader: Tuple[int, int]) -> List[ShardSlice]:
    """The work of ``reader`` (``instance_id`` of ``num_of_instances``) in the epoch ``state`` resumes, numbered.

    Its own state: its buffered samples first (read again to fill the buffer as it was), then its remaining
    slices. A merged state: its round-robin share of all readers' buffered samples, remaining slices and the
    shares (in ``epoch_order``, the epoch's shard order) of the readers that had not started.
    """
    if state["reader"] is not None:
        if tuple(state["reader"]) != tuple(reader):
            raise CheckpointMismatch(
                f"this state is reader {state['reader'][0]}'s of {state['reader'][1]} (ranks x DataLoader workers), "
                f"loaded into reader {reader[0]} of {reader[1]}: to resume with another number of ranks or workers, "
                "merge every reader's state with merge_states() and load that into the pipe"
            )
        if state["status"] == "before":
            work = [ShardSlice.of(url) for url in epoch_order[reader[0]::reader[1]]]
        else:
            work = refetch_slices(decode_positions(state["buffer"])) + [ShardSlice.from_state(part) for part in state["remaining"]]
        return [part.renumbered(item) for item, part in enumerate(work)]
    if state["status"] == "before":
        work = [ShardSlice.of(url) for url in epoch_order]
    else:
        layout = state["layout"]
        work = refetch_slices(decode_positions(state["buffer"])) + [ShardSlice.from_state(part) for part in state["remaining"]]
        for old_reader in state["not_started"]:
            work.extend(ShardSlice.of(url) for url in epoch_order[old_reader::layout])
    return [part.renumbered(item) for item, part in enumerate(work[reader[0]::reader[1]])]


def expand_merged(state: Mapping[str, Any], epoch_order: Sequence[str]) -> Dict[str, Any]:
    """A merged state with the work of the readers that had not started written out as slices (their shares of
    ``epoch_order``, the epoch's shard order), so that it needs the order no more."""
    expanded = dict(state)
    if state["status"] == "before":
        remaining = [ShardSlice.of(url) for url in epoch_order]
    else:
        remaining = [ShardSlice.from_state(part) for part in state["remaining"]]
        for old_reader in state["not_started"]:
            remaining.extend(ShardSlice.of(url) for url in epoch_order[old_reader::state["layout"]])
    expanded.update(status="running", remaining=[part.to_state() for part in remaining], not_started=[])
    return expanded


def dataset_states(state: Any) -> List[Dict[str, Any]]:
    """The reader states inside ``state``: a reader's or merged state itself, or those a ``StatefulDataLoader``
    (``num_workers`` 0 or more) or our ``DataLoader2`` reading service keeps in its ``state_dict()``."""
    if isinstance(state, Mapping) and state.get("format") == FORMAT:
        return [dict(state)]
    if isinstance(state, Mapping) and "reading_service_state" in state:  # DataLoader2.state_dict()
        from .service import loader_state_of

        return dataset_states(loader_state_of(state["reading_service_state"]))
    if isinstance(state, Mapping) and "_snapshot" in state:  # StatefulDataLoader, workers
        if state.get("_steps_since_snapshot"):
            raise CheckpointMismatch(
                "the StatefulDataLoader state lags its last batches (snapshot_every_n_steps > 1): its readers' states "
                "cannot be merged exactly; use snapshot_every_n_steps=1"
            )
        workers = state["_snapshot"]["_worker_snapshots"]
        readers = [_worker_state(workers[key]) for key in sorted(workers, key=lambda k: int(k.split("_")[-1]))]
        if state.get("_iterator_finished"):  # the epoch ended in every worker: the next one is to come
            readers = [_before_next(reader) for reader in readers]
        return readers
    if isinstance(state, Mapping) and "fetcher_state" in state:  # StatefulDataLoader, in the main process
        return [_before_next(reader) if state.get("_iterator_finished") else reader for reader in [_worker_state(state)]]
    raise CheckpointMismatch(
        f"no torchdata_s3ext reader state found in {type(state).__name__}"
        + (f" with keys {sorted(state)[:8]}" if isinstance(state, Mapping) else "")
        + ": is the loader's dataset a pipe ending in shuffle_samples() (wds_pipe's pipes do)?"
    )


def _worker_state(snapshot: Mapping[str, Any]) -> Dict[str, Any]:
    """The pipe's state in a ``StatefulDataLoader`` worker's snapshot (its dataset's, or its iterator's: torch
    wraps a pipe in an object that is both)."""
    state = snapshot.get("dataset_state")
    if state is None:
        state = (snapshot.get("fetcher_state") or {}).get("dataset_iter_state")
    return dataset_states(state)[0]


def _before_next(state: Dict[str, Any]) -> Dict[str, Any]:
    """A reader's state of an epoch it has ended, as the state before the next one."""
    if state["status"] == "running" and not state["remaining"] and not state["buffer"]["samples"]:
        return dict(state, status="before", epoch=state["epoch"] + 1, remaining=[], rng=None, draining=False)
    return state
