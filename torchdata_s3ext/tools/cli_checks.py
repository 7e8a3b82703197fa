"""How the command answers a user's mistake: one line naming the culprit and a non-zero exit, no traceback
(``--debug`` shows it); and the checks that find a mistake before any work is done."""
import argparse
import ipaddress
import re
import sys
from typing import Callable

__all__ = ["USER_ERRORS", "answering_mistakes", "bucket_name", "one_line"]

#: what the library raises for a caller's mistake or a store that says no (``FileNotFoundError``,
#: ``PermissionError``, ``ConnectionError`` and its ``EndpointUnreachable``, a throttling ``OSError``), answered
#: in one line; any other exception is a bug of ours and keeps its traceback
USER_ERRORS = (OSError, ValueError)
EXIT_USER_ERROR = 1

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

