"""The benchmark's outputs: a results table for the terminal (and one for the decoders), a few lines on how
this run's methods compare, a JSON file and a bar chart of samples/s."""
import collections
import json
import math
import os
import textwrap
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ...s3.backends import AUTO_BACKEND
from .decoders import PIL_BASELINE
from .methods import NO_DECODE, PEERS, RAW, RAW_METHODS, RAW_PARALLEL

__all__ = ["cpu_seconds_per_gb", "with_ratios", "row_label", "format_table", "format_decoder_table", "comparison_lines", "write_json", "write_chart"]

COLUMNS = (
    ("method", "method", "{}"),
    ("workers", "num_workers", "{}"),
    ("samples/s", "samples_per_s", "{:.1f}"),
    ("CPU s/GB", "cpu_s_per_gb", "{:.1f}"),
    ("x raw", "ratio_to_raw", "{:.2f}"),
    ("x raw-par", "ratio_to_raw_parallel", "{:.2f}"),
    ("x peer", "ratio_to_peer", "{:.2f}"),
    ("x 0 workers", "ratio_to_zero_workers", "{:.2f}"),
    ("MB/s", "mb_per_s", "{:.1f}"),
    ("1st batch s", "first_batch_s", "{:.2f}"),
    ("mean win s", "mean_window_s", "{:.3f}"),
    ("var win s2", "variance_window_s2", "{:.2e}"),
    ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
    ("CPU s", "cpu_s", "{:.1f}"),
    ("stall", "stall_fraction", "{:.0%}"),
    ("req/epoch", "requests_per_epoch", "{}"),
    ("$/epoch", "cost_usd_per_epoch", "{:.2e}"),
    ("cache hits", "cache_hits", "{}"),
    ("status", "status", "{}"),
)
#: columns left out of the table when no row has a value for them
OPTIONAL_COLUMNS = ("cpu_s_per_gb", "ratio_to_raw_parallel", "ratio_to_peer", "ratio_to_zero_workers", "stall_fraction", "first_batch_s", "cache_hits")

DECODER_COLUMNS = (
    ("decoder", "decoder", "{}"),
    ("pairs/s", "pairs_per_s", "{:.1f}"),
    ("x pil", "ratio_to_pil", "{:.2f}"),
)


def _ratio(rate: Optional[float], other: Optional[Dict[str, Any]]) -> Optional[float]:
    other_rate = other.get("samples_per_s") if other else None
    return rate / other_rate if rate is not None and other_rate else None


def cpu_seconds_per_gb(row: Dict[str, Any]) -> Optional[float]:
    """The CPU seconds the row's processes spent per GB (1e9 bytes) of sample bytes read, or ``None``.

    >>> cpu_seconds_per_gb({"cpu_s": 3.0, "payload_bytes": 2_000_000_000})
    1.5
    """
    cpu_s, payload = row.get("cpu_s"), row.get("payload_bytes")
    return cpu_s / (payload / 1e9) if cpu_s is not None and payload else None


def with_ratios(results: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The results, each with its samples/s over others' measured in the same run: ``ratio_to_raw`` (over
    ``raw``'s), ``ratio_to_raw_parallel`` (over ``raw-parallel``'s), ``ratio_to_peer`` (over its peer's in ``PEERS``, at the same workers and decoder) and
    ``ratio_to_zero_workers`` (over its own at 0 workers, same decoder, when it ran at other counts too); its
    ``cpu_s_per_gb``; and ``stall_fraction`` lifted up."""
    ceiling = next((r for r in results if r["method"] == RAW), None)
    parallel_ceiling = next((r for r in results if r["method"] == RAW_PARALLEL), None)
    by_setting = {(r["method"], r.get("num_workers"), r.get("decoder", NO_DECODE)): r for r in results}
    # a method measured at one worker count only has nothing to compare with
    worker_counts = collections.Counter((method, decoder) for method, _, decoder in by_setting)
    rows = []
    for result in results:
        rate = result.get("samples_per_s")
        workers, decoder = result.get("num_workers"), result.get("decoder", NO_DECODE)
        peer = PEERS.get(result["method"])
        several = worker_counts[(result["method"], decoder)] > 1
        zero_workers = by_setting.get((result["method"], 0, decoder)) if several else None
        train = result.get("train_step") or {}
        rows.append({
            **result,
            "ratio_to_raw": _ratio(rate, ceiling),
            "ratio_to_raw_parallel": _ratio(rate, parallel_ceiling),
            "peer": peer,
            "ratio_to_peer": _ratio(rate, by_setting.get((peer, workers, decoder))),
            "ratio_to_zero_workers": _ratio(rate, zero_workers),
            "cpu_s_per_gb": cpu_seconds_per_gb(result),
            "stall_fraction": train.get("stall_fraction"),
        })
    return rows


def _several_worker_counts(rows: Sequence[Dict[str, Any]]) -> bool:
    return len({row.get("num_workers") for row in rows if row["method"] not in RAW_METHODS}) > 1


def row_label(row: Dict[str, Any], several_worker_counts: bool) -> str:
    """The method's name, with its worker count when the run measured several: ``"boto3 (2 workers)"``."""
    if several_worker_counts and row["method"] not in RAW_METHODS and row.get("num_workers") is not None:
        return f"{row['method']} ({row['num_workers']} workers)"
    return row["method"]


def _cell(row: Dict[str, Any], key: str, form: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return form.format(value)


def _aligned(columns: Sequence[Tuple[str, str, str]], rows: Sequence[Dict[str, Any]]) -> List[str]:
    """The header, a rule and a line per row; the first column left-aligned, the others right-aligned."""
    cells = [[name for name, _, _ in columns]] + [[_cell(row, key, form) for _, key, form in columns] for row in rows]
    widths = [max(len(line[index]) for line in cells) for index in range(len(columns))]
    lines = []
    for number, line in enumerate(cells):
        lines.append("  ".join(cell.ljust(width) if index == 0 else cell.rjust(width) for index, (cell, width) in enumerate(zip(line, widths))))
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return lines


def format_table(rows: Sequence[Dict[str, Any]], title: Optional[str] = None) -> str:
    """A fixed-width table, one row per method (and worker count), failures' reasons listed below it."""
    columns = [
        column for column in COLUMNS
        if column[1] not in OPTIONAL_COLUMNS or any(row.get(column[1]) is not None for row in rows)
    ]
    lines = ([title] if title else []) + _aligned(columns, rows)
    if any(row.get("cpu_s_per_gb") is not None for row in rows):
        lines += ["", "CPU s/GB: CPU seconds of the method's process and its workers per GB of sample bytes read "
                      "(the server's not included)"]
    if any(row.get("ratio_to_peer") is not None for row in rows):
        lines += ["", "x peer: samples/s over the peer's (the library it wraps or replaces) at the same workers: "
                      + ", ".join(f"{ours} / {peer}" for ours, peer in PEERS.items())]
    if any(row.get("requests_per_epoch") is not None for row in rows):
        lines += ["", "req/epoch: S3 requests of one pass over the shards; $/epoch: their cost at S3 Standard "
                      "($0.0004 per 1,000 GET or HEAD, $0.005 per 1,000 LIST or PUT)"]
    if any(row.get("first_batch_s") is not None for row in rows):
        lines += ["", "1st batch s: seconds to the first batch (of the timed loop, or of the pass); no cache / cache "
                      "epoch 1 / cache epoch 2 (--cache-dir): whole passes over the shards, rates over the whole pass, "
                      "start-up included"]
    several = _several_worker_counts(rows)
    notes = [f"  {row_label(row, several)}: {row['error']}" for row in rows if row.get("error")]
    if notes:
        lines += ["", "not measured:"] + notes
    return "\n".join(lines)


def format_decoder_table(decoders: Dict[str, Any]) -> str:
    """The decode measurement: a row per decoder with pairs/s and its ratio to the PIL baseline; or its error."""
    if decoders.get("error"):
        return f"PNG decode not measured: {decoders['error']}"
    title = (f"PNG decode: {decoders['samples']} image/label pairs of {decoders['image_size']} from the first shard, "
             f"in memory, one process; median of {decoders['rounds']} rounds")
    return "\n".join([title] + _aligned(DECODER_COLUMNS, decoders["rows"]))


def comparison_lines(rows: Sequence[Dict[str, Any]], decoders: Optional[Dict[str, Any]] = None, link: str = "none") -> List[str]:
    """How this run's methods compare, in words, from the ratios ``with_ratios`` gave its rows: ``open_s3``'s
    default backend against ``raw``, each decoder against plain PIL, that backend's workers against 0 workers
    with decode, and every method against its peer; only what this run measured."""
    several = _several_worker_counts(rows)
    auto = f"open_s3 (auto = {AUTO_BACKEND})"
    through = "" if link == "none" else f", through --link {link}"
    lines = []
    for row in rows:
        if row["method"] != AUTO_BACKEND or row.get("ratio_to_raw") is None:
            continue
        lines.append(f"{auto}, {row.get('num_workers')} workers, decode {row.get('decoder', NO_DECODE)}{through}: "
                     f"{row['ratio_to_raw']:.2f}x the samples/s of raw (one streamed GET per shard), "
                     f"peak RSS {row['peak_rss_mb']:.0f} MB")
        if row.get("ratio_to_raw_parallel") is not None:
            lines.append(f"{auto}, {row.get('num_workers')} workers: {row['ratio_to_raw_parallel']:.2f}x the samples/s "
                         f"of raw-parallel (the same ranged GETs, bodies discarded)")
    for row in (decoders or {}).get("rows", []):
        if row["ratio_to_pil"] is not None and row["decoder"] != PIL_BASELINE:
            decoder = str(row["decoder"])
            what = (f"decode_samples on JPEGs ({decoder})" if decoder.startswith("jpeg")
                    else f"decode_png_pair(decoder={decoder!r})")
            lines.append(f"{what}: {row['ratio_to_pil']:.2f}x the pairs/s of plain PIL")
    for row in rows:
        if (row["method"] == AUTO_BACKEND and row.get("decoder", NO_DECODE) != NO_DECODE and row.get("num_workers")
                and row.get("ratio_to_zero_workers") is not None):
            lines.append(f"{auto} with decode {row['decoder']}: {row['num_workers']} workers give "
                         f"{row['ratio_to_zero_workers']:.2f}x the samples/s of 0 workers")
    for row in rows:
        if row.get("ratio_to_peer") is not None:
            lines.append(f"{row_label(row, several)}: {row['ratio_to_peer']:.2f}x the samples/s of its peer {row['peer']}")
    return lines


def write_json(path: str, rows: Sequence[Dict[str, Any]], settings: Dict[str, Any],
               decoders: Optional[Dict[str, Any]] = None) -> None:
    """``{"settings", "results": a row per method and worker count, "decoders": the decode measurement or null}``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as json_file:
        json.dump({"settings": settings, "results": list(rows), "decoders": decoders}, json_file, indent=2)


def write_chart(path: str, rows: Sequence[Dict[str, Any]], title: str) -> None:
    """A horizontal bar per measured method (samples/s, labelled with its ratio to ``raw``), ``raw`` as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [row for row in rows if row.get("samples_per_s") is not None]
    several = _several_worker_counts(rows)
    ceiling = next((row["samples_per_s"] for row in measured if row["method"] == RAW), None)
    bars = [row for row in measured if row["method"] != RAW]
    figure, axes = plt.subplots(figsize=(8, 0.45 * max(len(bars), 1) + 1.6))
    positions = range(len(bars))
    axes.barh(list(positions), [row["samples_per_s"] for row in bars], color="tab:blue")
    axes.set_yticks(list(positions), [row_label(row, several) for row in bars])
    axes.invert_yaxis()
    for position, row in zip(positions, bars):
        label = f" {row['samples_per_s']:.1f}" + (f" ({row['ratio_to_raw']:.2f}x raw)" if row.get("ratio_to_raw") else "")
        axes.text(row["samples_per_s"], position, label, va="center", fontsize=8)
    if ceiling:
        axes.axvline(ceiling, color="tab:red", linestyle="--", label=f"raw GET ceiling: {ceiling:.1f} samples/s")
        axes.legend(loc="lower right", fontsize=8)
    axes.set_xlabel("samples/s (empty training loop)")
    axes.set_title(textwrap.fill(title, 64), fontsize=10)  # the machine line is long: wrap, never clip
    axes.margins(x=0.25)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
