"""Every S3 client we make, and how an :class:`~torchdata_s3ext.S3Config` reaches each: one place.

Each is made once per process and configuration (:mod:`.process` says why, and forgets them after a fork),
with its library's own retries off wherever our loop (:mod:`.retry`) runs above it: botocore's
``max_attempts=1`` for every client we retry around, s3fs's loop off, the CRT's and the AWS C++ SDK's one
attempt per request, the AWS CLI's ``AWS_MAX_ATTEMPTS=1``. So the attempts and the time to an error are ours
alone (``docs/failures.md`` has the table).
"""
import dataclasses
import math
from typing import Any, Dict, List

from ... import compat
from ..._config import S3Config
from ..stats import count_botocore_requests
from .botocore_errors import botocore_errors_translated
from .credentials import credential_env, scoped_environ
from .pins import pin_versions
from .process import process_client
from .retry import call_with_retries

__all__ = [
    "aws_cli_options",
    "boto3_client",
    "boto3_client_kwargs",
    "crt_client",
    "iopath_path_manager",
    "native_s3_handler",
    "s3fs_filesystem",
]


def boto3_client_kwargs(config: S3Config) -> Dict[str, Any]:
    """Keyword arguments for ``boto3.Session(...).client("s3", **kwargs)`` (without the session part)."""
    from botocore import UNSIGNED
    from botocore.config import Config

    botocore_config = Config(
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        retries={"total_max_attempts": config.max_attempts, "mode": "standard"},
        signature_version=UNSIGNED if config.anonymous else None,
        s3={"addressing_style": "path"} if config.endpoint_url else None,
        max_pool_connections=32,
    )
    kwargs: Dict[str, Any] = {"config": botocore_config, "verify": config.verify_ssl}
    if config.endpoint_url:
        kwargs["endpoint_url"] = config.endpoint_url
    if config.region:
        kwargs["region_name"] = config.region
    if config.aws_access_key_id is not None:
        kwargs["aws_access_key_id"] = config.aws_access_key_id
        kwargs["aws_secret_access_key"] = config.aws_secret_access_key
        kwargs["aws_session_token"] = config.aws_session_token
    return kwargs



def boto3_client(config: S3Config, retries: bool = True) -> Any:
    """This process's boto3 S3 client for ``config``; ``retries=False`` leaves every retry to the caller."""
    if not retries:
        config = dataclasses.replace(config, max_attempts=1)

    def make_client() -> Any:
        import boto3

        session = boto3.session.Session(profile_name=config.profile) if config.profile else boto3.session.Session()
        client = session.client("s3", **boto3_client_kwargs(config))
        count_botocore_requests(client.meta.events)
        pin_versions(client.meta.events)
        return client

    return process_client("boto3", config, make_client)


def s3fs_filesystem(config: S3Config) -> Any:
    """This process's ``s3fs.S3FileSystem`` for ``config`` (never fsspec's shared instance cache); its own
    retries are off (botocore's, and s3fs's loop around each call: five attempts, nested twice in
    ``cat_file``, so 25 per part), since ours retry each part."""

    def make_filesystem() -> Any:
        import aiobotocore.session
        import s3fs

        # A session of our own, hooked before s3fs makes (or remakes) its client from it.
        session = aiobotocore.session.AioSession(profile=config.profile) if config.profile else aiobotocore.session.AioSession()
        count_botocore_requests(session)
        pin_versions(session)
        client_kwargs: Dict[str, Any] = {"verify": config.verify_ssl}
        if config.region:
            client_kwargs["region_name"] = config.region
        filesystem = s3fs.S3FileSystem(
            anon=config.anonymous,
            key=config.aws_access_key_id,
            secret=config.aws_secret_access_key,
            token=config.aws_session_token,
            session=session,
            endpoint_url=config.endpoint_url,
            client_kwargs=client_kwargs,
            config_kwargs={
                "connect_timeout": config.connect_timeout,
                "read_timeout": config.read_timeout,
                "retries": {"total_max_attempts": 1},
            },
            skip_instance_cache=True,
        )
        filesystem.retries = 1  # a public class attribute, not an argument of its constructor
        return filesystem

    return process_client("s3fs", config, make_filesystem)


def iopath_path_manager(config: S3Config) -> Any:
    """This process's iopath ``PathManager`` whose S3 handler uses our boto3 client for ``config`` (iopath
    would otherwise build its own from a named profile, "saml" by default), without botocore's retries: each
    of iopath's GETs is retried by our loop (:class:`_RetriedGets`)."""

    def make_path_manager() -> Any:
        from iopath.common.file_io import PathManager

        manager = PathManager()
        manager.register_handler(compat.iopath_handler_with_client(lambda: _RetriedGets(boto3_client(config, retries=False), config)))
        return manager

    return process_client("iopath", config, make_path_manager)


def native_s3_handler(config: S3Config, request_timeout_ms: int, alternatives: str) -> Any:
    """This process's torchdata native ``S3Handler``; ``config`` reaches it through the ``S3_ENDPOINT_URL`` /
    ``S3_USE_HTTPS`` / ``S3_VERIFY_SSL`` variables and ``AWS_RETRY_MODE=standard``, ``AWS_MAX_ATTEMPTS=1``
    (the AWS C++ SDK's retries off, since the backend retries each download; measured: in its default mode
    it ignores ``AWS_MAX_ATTEMPTS``, and a HEAD nobody answers took 48 s with a 2 s ``request_timeout_ms``,
    2.1 s in this one), read when it is made, and the credentials' variables,
    which it looks up again for each request (measured: a read outside them goes unsigned, and is denied), so
    calls into it run inside ``scoped_environ(credential_env(config))`` as well."""

    def make_handler() -> Any:
        handler_class = compat.torchdata_native_s3_handler(alternatives)
        env = dict(credential_env(config), AWS_RETRY_MODE="standard", AWS_MAX_ATTEMPTS="1")
        if config.endpoint_url:
            env["S3_ENDPOINT_URL"] = config.endpoint_url.split("://", 1)[1]
            env["S3_USE_HTTPS"] = "1" if config.use_https else "0"
            env["S3_VERIFY_SSL"] = "1" if config.verify_ssl else "0"
        with scoped_environ(env):
            return handler_class(request_timeout_ms, config.region or "us-east-1")

    return process_client("s3fileloader", (config, request_timeout_ms), make_handler)


def crt_client(config: S3Config, part_size: int) -> Any:
    """This process's s3torchconnector (CRT) client; it signs with the credentials in the environment, so
    calls into it run inside ``scoped_environ(credential_env(config))``. One attempt per request: the backend
    resumes a GET, and retries a HEAD, itself."""

    def make_client() -> Any:
        client_class = compat.crt_s3_client_class()
        from s3torchconnector import S3ClientConfig

        client_config = S3ClientConfig(
            part_size=part_size,
            unsigned=config.anonymous,
            force_path_style=config.endpoint_url is not None,
            max_attempts=1,
            profile=config.profile,
        )
        return client_class(config.region or "us-east-1", endpoint=config.endpoint_url, s3client_config=client_config)

    return process_client("s3torchconnector", (config, part_size), make_client)


class _RetriedGets:
    """A boto3 client whose every GetObject is retried by our loop, and raises our errors naming the URL; every
    other call passes through. For iopath, whose one ``open`` makes two GETs: a loop around the ``open`` would
    meet a fault of the second GET on each attempt where every other GET fails (measured with a proxy that
    answers every second GET with 503)."""

    def __init__(self, client: Any, config: S3Config) -> None:
        self._client = client
        self._config = config

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_object(self, **params: Any) -> Any:
        url = f"s3://{params.get('Bucket')}/{params.get('Key')}"

        def get_once() -> Any:
            with botocore_errors_translated(url, self._config):
                return self._client.get_object(**params)

        return call_with_retries(url, self._config.max_attempts, get_once)


def aws_cli_options(config: S3Config) -> List[str]:
    """The AWS CLI's options for ``config`` (credentials go by :func:`credential_env`); each value is joined to
    its option by ``=``, so argparse never takes one that starts with ``-`` for an option of its own."""
    options: List[str] = []
    if config.endpoint_url:
        options.append(f"--endpoint-url={config.endpoint_url}")
    if config.region:
        options.append(f"--region={config.region}")
    if config.profile:
        options.append(f"--profile={config.profile}")
    if config.anonymous:
        options += ["--no-sign-request"]
    if not config.verify_ssl:
        options += ["--no-verify-ssl"]
    # Whole seconds, rounded up: the CLI reads 0 as "wait forever".
    return options + [f"--cli-connect-timeout={math.ceil(config.connect_timeout)}",
                      f"--cli-read-timeout={math.ceil(config.read_timeout)}"]
