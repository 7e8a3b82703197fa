"""One S3 configuration, honoured the same way by every backend."""
import dataclasses
import os
from typing import Any, Optional, Tuple

__all__ = ["S3Config"]


@dataclasses.dataclass(frozen=True)
class S3Config:
    """Where and how to reach S3.

    Args:
        endpoint_url: an S3-compatible endpoint (MinIO, a local server, ...). ``None`` reads the standard
            ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` variables, then falls back to AWS itself.
        region: the bucket's region; ``None`` uses ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` or the profile's.
        profile: a named profile from the AWS config files.
        aws_access_key_id, aws_secret_access_key, aws_session_token: explicit credentials; ``None`` uses the
            usual chain (environment, profile, instance role). Never printed.
        anonymous: unsigned requests, for public buckets.
        connect_timeout: seconds before a connection attempt fails (a dead endpoint fails at once, unretried).
        read_timeout: seconds without a byte before a request fails as stalled: waiting for the answer's first
            byte (a black-holed endpoint), or between bytes of a body. Every backend and request kind (LIST,
            HEAD, GET) is bounded by it: a request nobody answers fails after ``max_attempts * read_timeout``
            seconds plus at most a few seconds of backoff (about 25 s with the defaults; see
            ``docs/failures.md``).
        max_attempts: total attempts per request (first try included), by our one retry loop (the clients' own
            retries are off beneath it, so attempts never multiply). A stream
            that resumes at the byte reached (``awscli``, ``s3torchconnector``) gives a run of faults
            ``max_attempts`` attempts, renewed only once the run has advanced the stream 1 MiB, and resumes at
            most ``8 * max_attempts`` times in all; then it fails naming the URL, the byte and the resumes.
        verify_ssl: check the endpoint's TLS certificate (turn off only for a self-signed test endpoint).
    """

    endpoint_url: Optional[str] = None
    region: Optional[str] = None
    profile: Optional[str] = None
    aws_access_key_id: Optional[str] = None
    aws_secret_access_key: Optional[str] = dataclasses.field(default=None, repr=False)
    aws_session_token: Optional[str] = dataclasses.field(default=None, repr=False)
    anonymous: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 8.0
    max_attempts: int = 3
    verify_ssl: bool = True

    def __post_init__(self) -> None:
        if self.endpoint_url is not None and not self.endpoint_url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint_url must start with http:// or https://, got {self.endpoint_url!r}")
        if (self.aws_access_key_id is None) != (self.aws_secret_access_key is None):
            raise ValueError("give both aws_access_key_id and aws_secret_access_key, or neither")
        if self.anonymous and self.aws_access_key_id is not None:
            raise ValueError("anonymous=True cannot be combined with explicit credentials")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("connect_timeout and read_timeout must be positive")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")

    @classmethod
    def field_names(cls) -> Tuple[str, ...]:
        """Every field, in order: the keywords ``open_s3``, ``wds_pipe`` and ``list_shards`` take besides ``config``."""
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def merged(cls, config: Optional["S3Config"] = None, **fields: Any) -> "S3Config":
        """``config`` (or the defaults) with each field given here and not ``None`` laid over it: how ``open_s3``,
        ``wds_pipe`` and ``list_shards`` combine their keyword arguments with a full ``config``.

        >>> S3Config.merged(S3Config(region="eu-west-1", max_attempts=5), max_attempts=2, region=None)
        S3Config(endpoint_url=None, region='eu-west-1', profile=None, aws_access_key_id=None, anonymous=False, connect_timeout=5.0, read_timeout=8.0, max_attempts=2, verify_ssl=True)
        """
        unknown = [name for name in fields if name not in cls.field_names()]
        if unknown:
            raise TypeError(f"unknown S3Config field {', '.join(map(repr, unknown))}; valid fields: {', '.join(cls.field_names())}")
        overrides = {name: value for name, value in fields.items() if value is not None}
        return dataclasses.replace(config if config is not None else cls(), **overrides)

    def resolved(self) -> "S3Config":
        """This configuration with the standard environment variables filled in where a field is ``None``."""
        endpoint = self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        region = self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        profile = self.profile or os.environ.get("AWS_PROFILE")
        return dataclasses.replace(self, endpoint_url=endpoint or None, region=region, profile=profile)

    @property
    def use_https(self) -> bool:
        return self.endpoint_url is None or self.endpoint_url.startswith("https://")
