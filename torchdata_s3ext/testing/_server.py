"""A real S3 server on loopback for tests and demos: moto's server in a subprocess, speaking S3's HTTP."""
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import tempfile
from typing import Dict, List, Optional, Sequence

__all__ = ["LocalS3Server", "ServerProcess", "DirectoryServer", "TEST_CREDENTIALS", "free_port"]

#: moto accepts any credentials; these make clients sign requests without a profile
TEST_CREDENTIALS: Dict[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


#: the one line a base install (no moto) gets from :class:`LocalS3Server`
MOTO_MISSING = (
    "the local S3 server needs moto: pip install 'torchdata-s3ext[test]' (or 'torchdata-s3ext[bench]', which has it too)"
)


def _importable(module_name: str) -> bool:
    try:
        return importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError:  # a missing parent package ("moto" for "moto.server")
        return False


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class ServerProcess:
    """A local S3 server in a process of its own on a free port of ``host``: start, wait until it answers
    (bounded by ``startup_timeout``), stop. Subclasses say how to start it and how to ask if it is up."""

    #: what the process is called in errors
    label = "server"

    def __init__(self, host: str = "127.0.0.1", port: Optional[int] = None, startup_timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._process: Optional[subprocess.Popen] = None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise RuntimeError(f"the {self.label} is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        """The server process's id while it runs (to watch or pin it), else ``None``."""
        return self._process.pid if self._process is not None else None

    def command(self) -> List[str]:
        raise NotImplementedError

    def process_env(self) -> Optional[Dict[str, str]]:
        return None

    def answers(self) -> bool:
        """Whether the server answers HTTP yet (an HTTP error counts as an answer)."""
        try:
            urllib.request.urlopen(f"{self.endpoint_url}/", timeout=2).close()
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, ConnectionError, socket.timeout):
            return False
        return True

    def start(self) -> "ServerProcess":
        if self.port is None:
            self.port = free_port(self.host)
        command = self.command()
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.process_env(),
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise RuntimeError(f"{self.label} exited with status {self._process.returncode}: {stderr.strip()[-2000:]}")
            if self.answers():
                # Nobody reads its stderr from here on: drain it so a chatty server never blocks on a full pipe.
                threading.Thread(target=self._process.stderr.read, daemon=True).start()  # type: ignore[union-attr]
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.label} did not answer on {self.endpoint_url} within {self.startup_timeout} s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class LocalS3Server(ServerProcess):
    """moto's S3 server on ``127.0.0.1``, in its own process (fork-safe: no server thread in the tests' process).

    Example:
        >>> with LocalS3Server() as server:  # doctest: +SKIP
        ...     boto3.client("s3", endpoint_url=server.endpoint_url).create_bucket(Bucket="my-bucket")
    """

    label = "moto server"

    def start(self) -> "LocalS3Server":
        # Otherwise the subprocess dies with a traceback ("No module named 'moto'") that names no remedy.
        if not _importable("moto.server"):
            raise ModuleNotFoundError(MOTO_MISSING, name="moto")
        super().start()
        return self

    def env(self) -> Dict[str, str]:
        """Variables that point boto3, s3fs, the AWS CLI and this package at the server."""
        return {**TEST_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url}

    def command(self) -> List[str]:
        return [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]

    def process_env(self) -> Dict[str, str]:
        return {**os.environ, **TEST_CREDENTIALS}

    def reset(self) -> None:
        """Forget every bucket and object."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()


class DirectoryServer(ServerProcess):
    """A file-backed server process: its objects in ``directory``, or in a temporary folder removed at stop,
    and the buckets ``buckets`` created at start."""

    def __init__(
        self, buckets: Sequence[str] = ("bench",), directory: Optional[str] = None, host: str = "127.0.0.1",
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(host=host, startup_timeout=startup_timeout)
        self.buckets = tuple(buckets)
        self._directory = directory
        self._owned_directory: Optional[tempfile.TemporaryDirectory] = None

    def directory(self) -> str:
        """The folder the objects live in (made now if none was given)."""
        if self._directory is None:
            self._owned_directory = tempfile.TemporaryDirectory(prefix=f"{self.label.split()[0]}-")
            self._directory = self._owned_directory.name
        return self._directory

    def stop(self) -> None:
        super().stop()
        if self._owned_directory is not None:
            self._owned_directory.cleanup()
            self._owned_directory = None
            self._directory = None
