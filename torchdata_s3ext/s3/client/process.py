"""One client per process and configuration, made lazily and forgotten after a fork.

boto3 sessions, s3fs file systems and the SSL state they hold are not fork-safe: a client inherited by a
DataLoader worker can hang or fail with "bad record mac". Pipes therefore never hold clients; backends ask
:mod:`.clients`, which builds a fresh one in each process on first use, through :func:`process_client`.
"""
import os
import threading
from typing import Any, Callable, Dict, Hashable, List, Tuple

__all__ = ["forget_clients", "process_client"]

_lock = threading.Lock()
_clients: Dict[Tuple[str, Hashable], Any] = {}
_owner_pid = os.getpid()
# Clients inherited through fork are kept alive, never used: destroying a native client (the CRT's, the AWS
# C++ SDK's) in the child would join threads that only exist in the parent, and hang.
_inherited: List[Dict[Tuple[str, Hashable], Any]] = []


def forget_clients() -> None:
    """Stop using every cached client (called in a child right after ``fork``)."""
    global _lock, _owner_pid, _clients
    _lock = threading.Lock()  # a lock held by another thread at fork time would never be released
    if _clients:
        _inherited.append(_clients)
        _clients = {}
    _owner_pid = os.getpid()


os.register_at_fork(after_in_child=forget_clients)


def process_client(kind: str, key: Hashable, factory: Callable[[], Any]) -> Any:
    """The client of this ``kind`` for ``key`` in this process, made by ``factory`` on first use."""
    if os.getpid() != _owner_pid:
        forget_clients()
    with _lock:
        client = _clients.get((kind, key))
        if client is None:
            client = _clients[(kind, key)] = factory()
        return client

