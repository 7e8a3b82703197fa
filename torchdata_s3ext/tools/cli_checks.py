"""How the command answers a user's mistake: one line naming the culprit and a non-zero exit, no traceback
(``--debug`` shows it); and the checks that find a mistake before any work is done.

The checks import nothing heavy (no torch, no boto3): a mistyped option is answered at once, before a server
starts, a dataset is made or a result file is written.
"""
import argparse
import ipaddress
import os
import re
import sys
from typing import Callable, Iterator, Optional, Tuple

from ..s3.io.sizing import MIN_PART_SIZE
from .bench.cpus import cpus_problem, parse_cpu_list
from .bench.methods import check_method_names

__all__ = ["USER_ERRORS", "PNG_DECODERS", "answering_mistakes", "bucket_name", "check_arguments", "cpu_list",
           "one_line", "png_decoder_name"]

#: what the library raises for a caller's mistake or a store that says no (``FileNotFoundError``,
#: ``PermissionError``, ``ConnectionError`` and its ``EndpointUnreachable``, a throttling ``OSError``), answered
#: in one line; any other exception is a bug of ours and keeps its traceback
USER_ERRORS = (OSError, ValueError)
EXIT_USER_ERROR = 1

#: ``samples.decode.DECODERS``, named here so that checking ``--decode`` imports no torch (a test keeps them equal)
PNG_DECODERS = ("auto", "libdeflate", "pyspng", "pil")

#: the least value of each numeric option (by its ``argparse`` dest), and the most where there is one
AT_LEAST = {
    "batch_size": 1, "batches": 1, "window": 1, "decode_samples": 1, "decode_rounds": 1, "concurrency": 1,
    "shards": 1, "samples_per_shard": 1, "size": 1, "classes": 1, "jobs": 1, "port": 1,
    "num_workers": 0, "seed": 0, "cache_limit": 0, "link_latency_ms": 0,
}
AT_MOST = {"classes": 256, "port": 65535}
#: the numeric options that must be more than zero (seconds, MB/s, MiB)
MORE_THAN_ZERO = ("time_limit", "link_mbps", "part_size", "memory_budget", "duration")
_WHY_AT_MOST = {"classes": " (labels are uint8)"}
_OPTION_NAMES = {"duration": "--for"}

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*[a-z0-9]")


def one_line(error: BaseException) -> str:
    """The error's message on one line: ``OSError``'s ``[Errno 2] words: 'url'`` as ``url: words``."""
    if isinstance(error, OSError) and error.strerror:
        text = f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    else:
        text = str(error)
    return " ".join(text.split())


def answering_mistakes(command: Callable[[], int], name: str, debug: bool) -> int:
    """``command()``'s exit status; a user's mistake printed as one line on stderr with status 1."""
    try:
        return command()
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"torchdata-s3ext {name}: {one_line(error)} (--debug shows the traceback)", file=sys.stderr)
        return EXIT_USER_ERROR


def bucket_name(name: str) -> str:
    """``name`` when S3 would take it as a new bucket's name, else ``ArgumentTypeError`` saying which rule it breaks.

    >>> bucket_name("train-data.v2")
    'train-data.v2'
    """
    if not 3 <= len(name) <= 63:
        problem = "must be 3 to 63 characters long"
    elif not _BUCKET_NAME.fullmatch(name):
        problem = "may hold only lowercase letters, digits, dots and hyphens, beginning and ending with a letter or digit"
    elif ".." in name:
        problem = "must not hold two dots in a row"
    elif re.fullmatch(r"[0-9.]+", name) and _is_ip_address(name):
        problem = "must not be an IP address"
    else:
        return name
    raise argparse.ArgumentTypeError(f"invalid bucket name {name!r}: a bucket name {problem}")


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def png_decoder_name(name: str) -> str:
    """``name`` if it is one of :data:`PNG_DECODERS`, else ``ValueError`` naming them (as ``decode_png`` words it)."""
    if name not in PNG_DECODERS:
        raise ValueError(f"unknown PNG decoder {name!r}; choose one of {', '.join(PNG_DECODERS)}")
    return name


def cpu_list(text: str) -> Tuple[int, ...]:
    """``--server-cpus``/``--client-cpus``: ``"0,2-3"`` -> ``(0, 2, 3)``, else ``ArgumentTypeError``."""
    try:
        return parse_cpu_list(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _option(dest: str) -> str:
    return _OPTION_NAMES.get(dest, "--" + dest.replace("_", "-"))


def _number_problems(args: argparse.Namespace) -> Iterator[str]:
    """What is wrong with the numeric options ``args`` has, option by option, in words that say the fix."""
    for dest, least in AT_LEAST.items():
        value = getattr(args, dest, None)
        values = value if isinstance(value, list) else [value]
        if any(item is not None and item < least for item in values):
            bound = "must not be negative" if least == 0 else f"must be at least {least}"
            yield f"{_option(dest)} {bound}, got {value}"
    for dest, most in AT_MOST.items():
        value = getattr(args, dest, None)
        if value is not None and value > most:
            yield f"{_option(dest)} must be at most {most}{_WHY_AT_MOST.get(dest, '')}, got {value}"
    for dest in MORE_THAN_ZERO:
        value = getattr(args, dest, None)
        if value is not None and not value > 0:
            yield f"{_option(dest)} must be more than 0, got {value:g}"
    part_size = getattr(args, "part_size", None)
    if part_size is not None and 0 < part_size and int(part_size * (1 << 20)) < 1:
        yield f"--part-size must be at least one byte ({1 / (1 << 20):.1e} MiB), got {part_size:g}"
    yield from _memory_budget_mistakes(args)


def _memory_budget_mistakes(args: argparse.Namespace) -> Iterator[str]:
    """``--memory-budget``: alone (not with the fixed sizes), and room for two of the smallest parts."""
    budget = getattr(args, "memory_budget", None)
    if budget is None or not budget > 0:
        return
    if getattr(args, "part_size", None) is not None or getattr(args, "concurrency", None) is not None:
        yield "--memory-budget sizes the parts itself: give it or --part-size/--concurrency, not both"
    elif int(budget * (1 << 20)) < 2 * MIN_PART_SIZE:
        yield (f"--memory-budget must hold two parts of {MIN_PART_SIZE / (1 << 20):g} MiB (one read, one in "
               f"flight): at least {2 * MIN_PART_SIZE / (1 << 20):g}, got {budget:g}")


def _endpoint_url(args: argparse.Namespace) -> Optional[str]:
    """The endpoint ``bench`` reaches without ``--server``: ``--endpoint-url``, else the variables'."""
    from .._config import S3Config

    return S3Config(endpoint_url=args.endpoint_url).resolved().endpoint_url


def _bench_problems(args: argparse.Namespace) -> Iterator[str]:
    """What is wrong with ``bench``'s (and ``demo``'s) other options: missing companions, paths, CPU lists."""
    if not args.src and not args.server:
        yield "give SRC (s3://bucket/prefix or a folder), or --server to make one"
    endpoint = _endpoint_url(args)
    if args.link != "none" and not args.server and not (endpoint or "").startswith("http://"):
        yield (f"--link {args.link} needs an http:// endpoint (--server, or --endpoint-url http://...), "
               f"got {endpoint or 'AWS S3'}")
    if args.cache_limit is not None and not args.cache_dir:
        yield "--cache-limit needs --cache-dir (the cache it limits)"
    if args.train_step is not None and not re.fullmatch(r"[\w.]+:\w+", args.train_step):
        yield f"--train-step must be MODULE:FUNCTION (e.g. torchdata_s3ext.tools.bench.steps:decode_and_convolve), got {args.train_step!r}"
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        yield f"--out {args.out} is a file; give a folder for results.json and the chart"
    if args.mount is not None and not os.path.isdir(args.mount):
        yield f"--mount {args.mount}: no such folder"
    if getattr(args, "mix", None):
        from .bench.ours import parse_mix

        try:
            parse_mix(args.mix)
        except ValueError as error:
            yield str(error)
    if args.server_cpus is not None and not args.server:
        yield "--server-cpus pins the server the bench starts: give --server too"
    for option, cpus in (("--server-cpus", args.server_cpus), ("--client-cpus", args.client_cpus)):
        problem = cpus_problem(option, cpus) if cpus is not None else None
        if problem:
            yield problem


def first_problem(args: argparse.Namespace) -> Optional[str]:
    """The first mistake in ``args`` that parsing let through, or ``None``."""
    if getattr(args, "list_methods", False):
        return None
    problems = list(_number_problems(args))
    if args.command in ("bench", "demo"):
        try:
            check_method_names(args.methods)
        except ValueError as error:
            problems.append(str(error))
        problems += list(_bench_problems(args))
    return problems[0] if problems else None


def check_arguments(args: argparse.Namespace) -> None:
    """``SystemExit`` with one line (``torchdata-s3ext bench: --batch-size must be at least 1, got 0``) when an
    option is wrong, before anything runs or is written."""
    problem = first_problem(args)
    if problem is not None:
        raise SystemExit(f"torchdata-s3ext {args.command}: {problem}")
