"""The ``s3fileloader`` backend reads the object it is asked for, signed with the credentials it is given, or
says why it cannot; a missing bucket is told from a missing key (here and in ``s3torchconnector``)."""
from typing import List

import boto3
import pytest

from torchdata_s3ext import S3Config
from torchdata_s3ext.s3.backends import get_opener
from torchdata_s3ext.s3.backends._s3fileloader import check_key
from torchdata_s3ext.s3.stats import process_stats
from torchdata_s3ext.testing import RcloneServer

pytest.importorskip("torchdata._torchdata", reason="torchdata's native S3 extension")

# Keys torchdata's native handler would normalise into other keys (measured: see the module's docstring).
NORMALISED_KEYS = ["dot/../z.tar", "dbl//slash.tar", "/leading.tar", "dot/./x.tar", "end/.", "end/..", "./x.tar",
                   "../x.tar", ".", "..", "dir//"]
# Keys it reads as they are.
KEPT_KEYS = ["per%41cent.tar", "plus+sign.tar", "a space.tar", " leading space.tar", "trailing space.tar ",
             "question?x=1.tar", "hash#f.tar", "ünïcödé.tar", "...", ".hidden", "a/..b", "a/.b", "dir/"]


@pytest.mark.parametrize("key", NORMALISED_KEYS)
def test_s3fileloader_refuses_a_key_it_would_normalise_before_any_request(key, s3_server):
    url = f"s3://bucket/{key}"
    before = process_stats().snapshot()
    with pytest.raises(ValueError, match="use another backend: boto3, fsspec, iopath, awscli, s3torchconnector") as raised:
        get_opener("s3fileloader")(url, S3Config(endpoint_url=s3_server.endpoint_url))
    assert repr(url) in str(raised.value) and "normalises" in str(raised.value)
    assert process_stats().snapshot() == before  # no HEAD, no GET


@pytest.mark.parametrize("key", ["a", "a/b.tar", "...", "a/..b", "a%2F..%2Fb", "dir/"])
def test_check_key_keeps_keys_without_empty_or_dot_segments(key):
    assert check_key(f"s3://bucket/{key}").key == key


@pytest.mark.parametrize("backend", ["s3fileloader", "boto3", "awscli"])
def test_keys_the_native_handler_keeps_read_their_own_object(backend, s3_server, s3_bucket):
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url)
    for index, key in enumerate(KEPT_KEYS + ["z.tar", "x.tar"]):
        client.put_object(Bucket=s3_bucket, Key=key, Body=f"{index}:{key}".encode() * 30)
    config = S3Config(endpoint_url=s3_server.endpoint_url, max_attempts=1)
    for index, key in enumerate(KEPT_KEYS):
        with get_opener(backend)(f"s3://{s3_bucket}/{key}", config) as stream:
            assert stream.read() == f"{index}:{key}".encode() * 30, key


@pytest.mark.parametrize("backend", ["s3fileloader", "s3torchconnector"])
def test_a_missing_bucket_is_told_from_a_missing_key(backend, s3_server, s3_bucket):
    if backend == "s3torchconnector":
        pytest.importorskip("s3torchconnector")
    config = S3Config(endpoint_url=s3_server.endpoint_url, max_attempts=1)
    with pytest.raises(FileNotFoundError, match="bucket does not exist") as raised:
        get_opener(backend)("s3://no-such-bucket-here/shard.tar", config)
    assert "s3://no-such-bucket-here/shard.tar" in str(raised.value)
    with pytest.raises(FileNotFoundError, match="no such key") as raised:
        get_opener(backend)(f"s3://{s3_bucket}/no-such-shard.tar", config)
    assert f"s3://{s3_bucket}/no-such-shard.tar" in str(raised.value)


class SignedRclone(RcloneServer):
    """rclone that answers only requests signed with ``KEY_ID``/``SECRET`` (moto checks no signature)."""

    KEY_ID, SECRET = "RIGHTKEYID", "RIGHTSECRET"

    def command(self) -> List[str]:
        return super().command() + ["--auth-key", f"{self.KEY_ID},{self.SECRET}"]


@pytest.fixture
def signed_server(monkeypatch):
    try:
        server = SignedRclone(buckets=("signed",))
        server.start()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    # Nothing but S3Config may supply credentials, and no lookup may leave the machine.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield server
    server.stop()


def test_s3fileloader_signs_with_the_credentials_of_its_config(signed_server):
    body = b"signed body " * 1000
    boto3.client("s3", endpoint_url=signed_server.endpoint_url, region_name="us-east-1",
                 aws_access_key_id=SignedRclone.KEY_ID, aws_secret_access_key=SignedRclone.SECRET,
                 ).put_object(Bucket="signed", Key="shard.tar", Body=body)
    config = S3Config(endpoint_url=signed_server.endpoint_url, region="us-east-1", max_attempts=1,
                      aws_access_key_id=SignedRclone.KEY_ID, aws_secret_access_key=SignedRclone.SECRET)
    with get_opener("s3fileloader")("s3://signed/shard.tar", config) as stream:
        assert stream.read() == body
    wrong = S3Config(endpoint_url=signed_server.endpoint_url, region="us-east-1", max_attempts=1,
                     aws_access_key_id=SignedRclone.KEY_ID, aws_secret_access_key="WRONG")
    with pytest.raises(PermissionError, match="s3://signed/shard.tar"):
        get_opener("s3fileloader")("s3://signed/shard.tar", wrong)
