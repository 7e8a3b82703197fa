"""An :class:`~._proxy.S3Proxy` in a process of its own, for clients that hold the GIL while they wait."""
import multiprocessing
import multiprocessing.connection
from typing import Dict, Optional

from ._proxy import FaultPlan, S3Proxy

__all__ = ["S3ProxyProcess"]


class S3ProxyProcess:
    """An :class:`S3Proxy` in a process of its own, for a client that holds the GIL while it waits for the
    network (torchdata's native S3 handler holds it for a whole download), which an in-process proxy could
    then never answer. ``endpoint_url``, ``object_gets`` and ``faults_injected`` as :class:`S3Proxy` has them."""

    def __init__(self, upstream_endpoint: str, plan: Optional[FaultPlan] = None, startup_timeout: float = 60.0) -> None:
        self.upstream_endpoint = upstream_endpoint
        self.plan = plan or FaultPlan()
        self.startup_timeout = startup_timeout
        self.endpoint_url = ""
        self._process: Optional[multiprocessing.process.BaseProcess] = None
        self._connection: Optional[multiprocessing.connection.Connection] = None

    def start(self) -> "S3ProxyProcess":
        context = multiprocessing.get_context("spawn")  # no inherited client, lock or thread
        self._connection, child_end = context.Pipe()
        self._process = context.Process(target=_serve_in_process, args=(self.upstream_endpoint, self.plan, child_end),
                                        name="s3-proxy", daemon=True)
        self._process.start()
        if not self._connection.poll(self.startup_timeout):
            self.stop()
            raise TimeoutError(f"the proxy process did not start within {self.startup_timeout} s")
        self.endpoint_url = self._connection.recv()
        return self

    def _counts(self) -> Dict[str, int]:
        assert self._connection is not None, "the proxy is not started"
        self._connection.send("counts")
        return self._connection.recv()

    @property
    def object_gets(self) -> int:
        return self._counts()["object_gets"]

    @property
    def faults_injected(self) -> int:
        return self._counts()["faults_injected"]

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            self._connection.send("stop")  # type: ignore[union-attr]
        except OSError:
            pass  # it has ended already
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()

    def __enter__(self) -> "S3ProxyProcess":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _serve_in_process(upstream_endpoint: str, plan: FaultPlan, connection: "multiprocessing.connection.Connection") -> None:
    with S3Proxy(upstream_endpoint, plan) as proxy:
        connection.send(proxy.endpoint_url)
        while connection.recv() != "stop":
            connection.send({"object_gets": proxy.object_gets, "faults_injected": proxy.faults_injected})
