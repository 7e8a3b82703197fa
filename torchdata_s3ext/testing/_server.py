"""A real S3 server on loopback for tests and demos: moto's server in a subprocess, speaking S3's HTTP."""
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Dict, Optional

__all__ = ["LocalS3Server", "TEST_CREDENTIALS"]

#: moto accepts any credentials; these make clients sign requests without a profile
TEST_CREDENTIALS: Dict[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class LocalS3Server:
    """moto's S3 server on ``127.0.0.1``, in its own process (fork-safe: no server thread in the tests' process).

    Example:
        >>> with LocalS3Server() as server:  # doctest: +SKIP
        ...     boto3.client("s3", endpoint_url=server.endpoint_url).create_bucket(Bucket="b")
    """

    def __init__(self, host: str = "127.0.0.1", port: Optional[int] = None, startup_timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._process: Optional[subprocess.Popen] = None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server is not started")
        return f"http://{self.host}:{self.port}"

    def env(self) -> Dict[str, str]:
        """Variables that point boto3, s3fs, the AWS CLI and this package at the server."""
        return {**TEST_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url}

    def start(self) -> "LocalS3Server":
        if self.port is None:
            self.port = _free_port(self.host)
        command = [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, **TEST_CREDENTIALS},
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited with status {self._process.returncode} ({' '.join(command)})")
            try:
                urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=2).close()
                return self
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"moto server did not answer on {self.endpoint_url} within {self.startup_timeout} s")

    def reset(self) -> None:
        """Forget every bucket and object."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> "LocalS3Server":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
