"""Set environment variables for the duration of a block: the native clients read their settings from it."""
import contextlib
import os
import threading
from typing import Dict, Iterator

__all__ = ["scoped_environ"]

_lock = threading.Lock()


@contextlib.contextmanager
def scoped_environ(values: Dict[str, str]) -> Iterator[None]:
    with _lock:
        saved = {name: os.environ.get(name) for name in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for name, old in saved.items():
                if old is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = old
