"""Every S3 client we make, and how an :class:`~torchdata_s3ext.S3Config` reaches each: one place.

One client per process and configuration, made lazily and forgotten after a fork. boto3 sessions, s3fs file
systems and the SSL state they hold are not fork-safe: a client inherited by a DataLoader worker can hang or
fail with "bad record mac". Pipes therefore never hold clients; backends ask this module, which builds a
fresh one in each process on first use.
"""
import contextlib
import contextvars
import dataclasses
import math
import os
import threading
from typing import Any, Callable, Dict, Hashable, Iterator, List, Optional, Tuple

from .. import compat
from .._config import S3Config
from .environ import scoped_environ
from .errors import WrongLength, botocore_errors_translated
from .retry import call_with_retries
from .stats import count_botocore_requests

__all__ = [
    "aws_cli_options",
    "boto3_client",
    "boto3_client_kwargs",
    "credential_env",
    "crt_client",
    "forget_clients",
    "iopath_path_manager",
    "native_s3_handler",
    "process_client",
    "s3fs_filesystem",
    "VersionPin",
]

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


class VersionPin:
    """One object version for one stream: every GET made inside :meth:`applied` carries ``IfMatch: etag``, so
    S3 answers 412 PreconditionFailed instead of another version's bytes once the object is overwritten; and
    every answer is checked against the object's ``size``, as :func:`check_get_answer` does.

    ``etag`` and ``size`` are given (a HEAD's), or learnt from the first answer to a GET inside
    :meth:`applied` (iopath's opening GET). The pin reaches the botocore hooks of :func:`boto3_client` and
    :func:`s3fs_filesystem` through a context variable, so it holds for the calls of this thread only (and
    for the asyncio tasks fsspec starts from it, which copy the caller's context): parts of one stream fetched
    on several threads each apply it.
    """

    def __init__(self, url: str, etag: Optional[str] = None, size: Optional[int] = None) -> None:
        self.url = url
        self.etag = etag
        self.size = size

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        token = _current_pin.set(self)
        try:
            yield
        finally:
            _current_pin.reset(token)


_current_pin: "contextvars.ContextVar[Optional[VersionPin]]" = contextvars.ContextVar("torchdata_s3ext_version_pin", default=None)


def _send_if_match(params: Dict[str, Any], **_: Any) -> None:
    pin = _current_pin.get()
    if pin is not None and pin.etag and "IfMatch" not in params:
        params["IfMatch"] = pin.etag


def check_get_answer(url: str, answer: Dict[str, Any], size: Optional[int]) -> int:
    """The object's size a GetObject's answer announces (its ``Content-Range``'s total, or its
    ``Content-Length`` when it has none); ``WrongLength`` naming ``url`` when its ``Content-Length`` is not its
    ``Content-Range``'s span, or the size is not ``size`` (where known: a HEAD's, or the first answer's)."""
    length = answer.get("ContentLength")
    content_range = answer.get("ContentRange")
    announced = length
    if content_range:
        span, _, total = content_range.split(" ", 1)[-1].partition("/")
        first, _, last = span.partition("-")
        announced = int(total)
        if length is not None and length != int(last) - int(first) + 1:
            raise WrongLength(f"{url}: the answer announced Content-Range {content_range!r} and Content-Length {length}")
    if size is not None and announced is not None and announced != size:
        raise WrongLength(f"{url}: a GET announced an object of {announced} bytes, not the {size} bytes known at open")
    return announced if announced is not None else -1


def _check_answer(parsed: Dict[str, Any], **_: Any) -> None:
    pin = _current_pin.get()
    if pin is None or "Error" in parsed:
        return
    if pin.etag is None and parsed.get("ETag"):
        pin.etag = parsed["ETag"]
    announced = check_get_answer(pin.url, parsed, pin.size)
    if pin.size is None and announced >= 0:
        pin.size = announced


def _pin_versions(events: Any) -> None:
    """Let :class:`VersionPin` reach every GetObject of a botocore (or aiobotocore) client or session."""
    events.register("before-parameter-build.s3.GetObject", _send_if_match, unique_id="torchdata_s3ext.if_match")
    events.register("after-call.s3.GetObject", _check_answer, unique_id="torchdata_s3ext.learn_etag")


def boto3_client(config: S3Config, retries: bool = True) -> Any:
    """This process's boto3 S3 client for ``config``; ``retries=False`` leaves every retry to the caller."""
    if not retries:
        config = dataclasses.replace(config, max_attempts=1)

    def make_client() -> Any:
        import boto3

        session = boto3.session.Session(profile_name=config.profile) if config.profile else boto3.session.Session()
        client = session.client("s3", **boto3_client_kwargs(config))
        count_botocore_requests(client.meta.events)
        _pin_versions(client.meta.events)
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
        _pin_versions(session)
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
