"""``bench --server-cpus LIST --client-cpus LIST``: the CPUs the bench's server and its measured processes run on.

A list is written as ``taskset -c`` takes it (``0``, ``0,2``, ``2-3``). Pinning goes through the CPU affinity
a process inherits: :func:`pinned_to` sets this thread's affinity while a process (or a thread that serves
connections) is started, so the started one and all it starts in turn keep it; this thread gets its own back
afterwards. Linux only (``os.sched_setaffinity``). Imports nothing heavy: the command line checks lists here.
"""
import contextlib
import os
from typing import Iterator, Optional, Sequence, Tuple

__all__ = ["parse_cpu_list", "format_cpus", "cpus_problem", "pinned_to", "affinity"]

CpuList = Tuple[int, ...]


def parse_cpu_list(text: str) -> CpuList:
    """``"0,2-3"`` -> ``(0, 2, 3)`` (sorted, each CPU once); ``ValueError`` saying how to write one.

    >>> parse_cpu_list("3,0-1")
    (0, 1, 3)
    """
    cpus = set()
    for item in text.split(","):
        first, dash, last = item.strip().partition("-")
        if not (first.isdigit() and (last.isdigit() if dash else True)) or (dash and int(last) < int(first)):
            raise ValueError(f"CPU list {text!r}: write CPU numbers and ranges as taskset -c does, e.g. 0 or 0,2-3")
        cpus.update(range(int(first), int(last if dash else first) + 1))
    return tuple(sorted(cpus))


def format_cpus(cpus: Sequence[int]) -> str:
    """``(0, 1, 3)`` -> ``"0-1,3"``, the way :func:`parse_cpu_list` reads it.

    >>> format_cpus((0, 1, 2, 5))
    '0-2,5'
    """
    runs = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(first) if first == last else f"{first}-{last}" for first, last in runs)


def cpus_problem(option: str, cpus: Sequence[int]) -> Optional[str]:
    """Why ``cpus`` cannot be pinned to here (no affinity calls, or CPUs this process may not use), or ``None``."""
    if not hasattr(os, "sched_setaffinity"):
        return f"{option} needs Linux (os.sched_setaffinity), which this platform lacks"
    usable = os.sched_getaffinity(0)
    missing = sorted(set(cpus) - usable)
    if missing:
        return (f"{option} {format_cpus(cpus)}: no CPU {format_cpus(missing)} here; "
                f"this machine lets the bench use CPUs {format_cpus(sorted(usable))}")
    return None


@contextlib.contextmanager
def pinned_to(cpus: Optional[Sequence[int]]) -> Iterator[None]:
    """Within the block, this thread runs on ``cpus`` (``None``: as it is), and so does every process or thread
    it starts there, for good; at the end this thread's own affinity is back."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def affinity(pid: int = 0) -> Optional[CpuList]:
    """The CPUs process ``pid`` (0: this thread) may run on, or ``None`` where the platform cannot tell."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return tuple(sorted(os.sched_getaffinity(pid)))
