"""The benchmark's outputs: a results table for the terminal, a JSON file and a bar chart of samples/s."""
import json
import math
import os
import textwrap
from typing import Any, Dict, List, Optional, Sequence

from .methods import RAW

__all__ = ["with_ratios", "format_table", "write_json", "write_chart"]

COLUMNS = (
    ("method", "method", "{}"),
    ("samples/s", "samples_per_s", "{:.1f}"),
    ("x raw", "ratio_to_raw", "{:.2f}"),
    ("MB/s", "mb_per_s", "{:.1f}"),
    ("mean win s", "mean_window_s", "{:.3f}"),
    ("var win s2", "variance_window_s2", "{:.2e}"),
    ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
    ("CPU s", "cpu_s", "{:.1f}"),
    ("stall", "stall_fraction", "{:.0%}"),
    ("req/epoch", "requests_per_epoch", "{}"),
    ("$/epoch", "cost_usd_per_epoch", "{:.2e}"),
    ("status", "status", "{}"),
)


def with_ratios(results: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The results, each with ``ratio_to_raw`` (its samples/s over ``raw``'s) and ``stall_fraction`` lifted up."""
    ceiling = next((r.get("samples_per_s") for r in results if r["method"] == RAW), None)
    rows = []
    for result in results:
        rate = result.get("samples_per_s")
        train = result.get("train_step") or {}
        rows.append({
            **result,
            "ratio_to_raw": rate / ceiling if rate is not None and ceiling else None,
            "stall_fraction": train.get("stall_fraction"),
        })
    return rows


def _cell(row: Dict[str, Any], key: str, form: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return form.format(value)


def format_table(rows: Sequence[Dict[str, Any]], title: Optional[str] = None) -> str:
    """A fixed-width table, one row per method, failures' reasons listed below it."""
    shown = [name for name, key, _ in COLUMNS if key != "stall_fraction" or any(r.get(key) is not None for r in rows)]
    columns = [column for column in COLUMNS if column[0] in shown]
    cells = [[name for name, _, _ in columns]] + [[_cell(row, key, form) for _, key, form in columns] for row in rows]
    widths = [max(len(line[index]) for line in cells) for index in range(len(columns))]
    lines = [title] if title else []
    for number, line in enumerate(cells):
        lines.append("  ".join(cell.ljust(width) if index == 0 else cell.rjust(width) for index, (cell, width) in enumerate(zip(line, widths))))
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    if any(row.get("requests_per_epoch") is not None for row in rows):
        lines += ["", "req/epoch: S3 requests of one pass over the shards; $/epoch: their cost at S3 Standard "
                      "($0.0004 per 1,000 GET or HEAD, $0.005 per 1,000 LIST or PUT)"]
    notes = [f"  {row['method']}: {row['error']}" for row in rows if row.get("error")]
    if notes:
        lines += ["", "not measured:"] + notes
    return "\n".join(lines)


def write_json(path: str, rows: Sequence[Dict[str, Any]], settings: Dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as json_file:
        json.dump({"settings": settings, "results": list(rows)}, json_file, indent=2)


def write_chart(path: str, rows: Sequence[Dict[str, Any]], title: str) -> None:
    """A horizontal bar per measured method (samples/s, labelled with its ratio to ``raw``), ``raw`` as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [row for row in rows if row.get("samples_per_s") is not None]
    ceiling = next((row["samples_per_s"] for row in measured if row["method"] == RAW), None)
    bars = [row for row in measured if row["method"] != RAW]
    figure, axes = plt.subplots(figsize=(8, 0.45 * max(len(bars), 1) + 1.6))
    positions = range(len(bars))
    axes.barh(list(positions), [row["samples_per_s"] for row in bars], color="tab:blue")
    axes.set_yticks(list(positions), [row["method"] for row in bars])
    axes.invert_yaxis()
    for position, row in zip(positions, bars):
        label = f" {row['samples_per_s']:.1f}" + (f" ({row['ratio_to_raw']:.2f}x raw)" if row.get("ratio_to_raw") else "")
        axes.text(row["samples_per_s"], position, label, va="center", fontsize=8)
    if ceiling:
        axes.axvline(ceiling, color="tab:red", linestyle="--", label=f"raw GET ceiling: {ceiling:.1f} samples/s")
        axes.legend(loc="lower right", fontsize=8)
    axes.set_xlabel("samples/s (empty training loop)")
    axes.set_title(textwrap.fill(title, 80), fontsize=10)  # the machine line is long: wrap, never clip
    axes.margins(x=0.25)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
