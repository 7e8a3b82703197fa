"""The benchmark's methods that are this package's whole reading, not one opener: ``wds-pipe`` (``wds_pipe``
under the DataLoader's workers, as the other methods run) and ``wds-node`` (``wds_node`` under
``torchdata.nodes``' ``Loader``, decoding on threads instead of worker processes).

Both read the bench's shards with the default backend (``auto``), a 100-sample shuffle buffer and a fixed seed,
in an epoch of as many samples as the timed loop takes (``samples_per_epoch``: the shards cycle as often as it
takes). With ``--mix NAME:WEIGHT ...`` the shard list is cut into as many consecutive parts as names, each a
dataset of a weighted mix: the cost of mixing beside the single pipe's.
"""
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .context import MethodContext

__all__ = ["NODE_METHOD", "PIPE_METHOD", "mix_parts", "node_loader", "parse_mix", "wds_node_method", "wds_pipe_method"]

PIPE_METHOD = "wds-pipe"
NODE_METHOD = "wds-node"
#: the shuffle buffer of both methods: enough to shuffle, small enough that the first batch comes early
SHUFFLE_BUFFER = 100


def parse_mix(items: Sequence[str]) -> Tuple[Tuple[str, float], ...]:
    """``--mix``'s ``NAME:WEIGHT`` items as ``(name, weight)`` pairs; ``ValueError`` saying which item is wrong."""
    parsed: List[Tuple[str, float]] = []
    for item in items:
        name, _, weight = item.rpartition(":")
        try:
            value = float(weight)
        except ValueError:
            value = -1.0
        if not name or not value > 0 or value == float("inf"):
            raise ValueError(f"--mix takes NAME:WEIGHT items with a positive weight (e.g. web:3 books:1), got {item!r}")
        if name in (known for known, _ in parsed):
            raise ValueError(f"--mix names {name!r} twice")
        parsed.append((name, value))
    return tuple(parsed)


def mix_parts(urls: Sequence[str], mix: Sequence[Tuple[str, float]]) -> Dict[str, List[str]]:
    """The shard list cut into consecutive parts, one per name (``ValueError`` with fewer shards than names)."""
    if len(urls) < len(mix):
        raise ValueError(f"--mix names {len(mix)} datasets but the bench has {len(urls)} shards to share among them")
    edges = [round(number * len(urls) / len(mix)) for number in range(len(mix) + 1)]
    return {name: list(urls[edges[number]:edges[number + 1]]) for number, (name, _) in enumerate(mix)}


def _options(context: MethodContext, samples: Optional[int]) -> Dict[str, Any]:
    """The pipe's options: the bench's endpoint and parts; epochs of ``samples`` (the timed loop's, cycling the
    shards as often as it takes), or one pass over the shards when ``None``."""
    options: Dict[str, Any] = {"backend": "auto", "config": context.s3_config(), "shuffle_buffer": SHUFFLE_BUFFER,
                               "seed": 0, "decode": False, **context.ranged_options("auto")}
    if context.mix:
        options["weights"] = dict(context.mix)
    if samples is not None:
        options["samples_per_epoch"] = samples
    elif context.mix:
        options["stop"] = "all_exhausted"
    return options


def _shards(context: MethodContext) -> Any:
    return mix_parts(context.urls, context.mix) if context.mix else list(context.urls)


def wds_pipe_method(context: MethodContext, samples: Optional[int] = None) -> Iterable:
    """``wds_pipe`` over the bench's shards (or its mix), samples left encoded (the bench decodes them)."""
    from ...pipeline import wds_pipe

    return wds_pipe(_shards(context), **_options(context, samples or context.epoch_samples))


def wds_node_method(context: MethodContext, samples: Optional[int] = None) -> Iterable:
    """``wds_node`` under a ``Loader``, one sample at a time (for counting a pass's requests)."""
    from torchdata.nodes import Loader

    from ...pipeline import wds_node

    return Loader(wds_node(_shards(context), **_options(context, samples or context.epoch_samples)))


def node_loader(context: MethodContext, batch_size: int, decode_threads: int, decode: Any) -> Iterable:
    """``wds_node`` -> (``decode`` on ``decode_threads`` threads, in order) -> ``Batcher`` -> ``Loader``: lists of
    ``batch_size`` samples."""
    from torchdata.nodes import Batcher, Loader, ParallelMapper

    from ...pipeline import wds_node

    node: Any = wds_node(_shards(context), **_options(context, context.epoch_samples))
    if decode is not None:
        node = ParallelMapper(node, map_fn=decode, num_workers=max(decode_threads, 1), in_order=True, method="thread")
    return Loader(Batcher(node, batch_size=batch_size))
