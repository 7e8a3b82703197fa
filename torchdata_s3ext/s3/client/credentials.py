"""Credentials and settings handed over through the environment: the AWS CLI, the CRT and torchdata's native
handler read them from there (:func:`credential_env`), and :func:`scoped_environ` sets them for a block."""
import contextlib
import os
import threading
from typing import Dict, Iterator

from ..._config import S3Config

__all__ = ["credential_env", "scoped_environ"]

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


def credential_env(config: S3Config) -> Dict[str, str]:
    """Environment variables that hand ``config``'s credentials, profile and region to a subprocess or a
    native client (the AWS CLI, the CRT, torchdata's handler), which read their settings from there."""
    env: Dict[str, str] = {}
    if config.aws_access_key_id is not None:
        env["AWS_ACCESS_KEY_ID"] = config.aws_access_key_id
        env["AWS_SECRET_ACCESS_KEY"] = config.aws_secret_access_key or ""
        if config.aws_session_token:
            env["AWS_SESSION_TOKEN"] = config.aws_session_token
    if config.profile:
        env["AWS_PROFILE"] = config.profile
    if config.region:
        env["AWS_REGION"] = config.region
        env["AWS_DEFAULT_REGION"] = config.region
    return env
