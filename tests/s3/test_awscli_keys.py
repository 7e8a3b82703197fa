"""The ``awscli`` backend hands every key to S3 as data: never loaded from a file or a URL, never read as an
option, never seen by a shell. Each object is put with boto3 and read back through the CLI."""
import boto3
import pytest

from torchdata_s3ext import S3Config
from torchdata_s3ext.s3.backends._awscli import _command, open_url
from torchdata_s3ext.testing import S3Proxy

# Values the CLI would otherwise load from a file or a URL, read as an option, or that URL parsing and path
# normalisation would change.
AWKWARD_KEYS = [
    "file:///etc/hostname",
    "fileb:///etc/hostname",
    "http://127.0.0.1:9/x",
    "https://127.0.0.1:9/x",
    "-dash.tar",
    "--help.tar",
    "-",
    "ünïcödé/日本.tar",
    "per%41cent%2F.tar",
    "plus+sign.tar",
    "question?x=1.tar",
    "hash#fragment.tar",
    "a//b.tar",
    "a/../b.tar",
    "dot/./c.tar",
    "/leading-slash.tar",
    " leading space.tar",
    "trailing space.tar ",
    "$HOME/~user.tar",
    "quote'\"`;|&.tar",
]


@pytest.fixture
def put_each_key(s3_server, s3_bucket):
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url)

    def put(keys):
        for index, key in enumerate(keys):
            client.put_object(Bucket=s3_bucket, Key=key, Body=f"{index}:{key}".encode() * 50)
        stored = [entry["Key"] for entry in client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
        assert sorted(stored) == sorted(keys)  # the server kept each key as it was sent
        return {key: f"{index}:{key}".encode() * 50 for index, key in enumerate(keys)}

    return put


def test_awscli_reads_each_awkward_key_as_its_own_object(put_each_key, s3_server, s3_bucket):
    bodies = put_each_key(AWKWARD_KEYS)
    config = S3Config(endpoint_url=s3_server.endpoint_url, max_attempts=1)
    for key, body in bodies.items():
        with open_url(f"s3://{s3_bucket}/{key}", config) as stream:
            assert stream.read() == body, key


def test_awscli_resumes_an_awkward_key_with_a_range(put_each_key, s3_server, s3_bucket):
    from torchdata_s3ext.testing import FaultPlan

    key = "file:///etc/hostname"
    body = put_each_key([key])[key]
    with S3Proxy(s3_server.endpoint_url, FaultPlan(cut_every=1, cut_after_bytes=300, max_faults=1)) as proxy:
        config = S3Config(endpoint_url=proxy.endpoint_url, max_attempts=3)
        with open_url(f"s3://{s3_bucket}/{key}", config) as stream:
            assert stream.read() == body
        assert proxy.faults_injected == 1 and proxy.object_gets == 2


def test_awscli_sends_the_key_on_stdin_and_no_value_on_the_command_line_can_be_expanded():
    config = S3Config(endpoint_url="http://127.0.0.1:9", region="us-east-1", profile="-p")
    command = _command("s3://bucket/file:///etc/passwd", 7, "/dev/fd/9", config, "aws", ())
    assert "file:///etc/passwd" not in " ".join(command)
    assert command[:5] == ["aws", "s3api", "get-object", "--bucket=bucket", "--key=file:///dev/stdin"]
    assert "--range=bytes=7-" in command and "--profile=-p" in command
    # Every value is joined to its option (only flags stand alone), so argparse never reads one as an option.
    alone = [part for part in command[3:] if "=" not in part]
    assert alone == ["/dev/fd/9"]


def test_awscli_rounds_sub_second_timeouts_up_rather_than_to_no_timeout():
    command = _command("s3://bucket/k.tar", 0, "/dev/fd/9", S3Config(connect_timeout=0.2, read_timeout=0.5), "aws", ())
    assert "--cli-connect-timeout=1" in command and "--cli-read-timeout=1" in command


@pytest.mark.parametrize("key, message", [("carriage\rreturn.tar", "carriage return"), ("k" * 1025, "at most 1024 bytes")])
def test_awscli_refuses_keys_it_would_change_before_any_request(key, message, s3_server):
    url = f"s3://bucket/{key}"
    with S3Proxy(s3_server.endpoint_url) as proxy:
        with pytest.raises(ValueError, match=message) as raised:
            open_url(url, S3Config(endpoint_url=proxy.endpoint_url))
        assert proxy.object_gets == 0
    assert repr(url) in str(raised.value)


def test_no_backend_starts_a_shell_but_the_pipe_backend_with_the_users_own_command():
    import pathlib

    import torchdata_s3ext

    shells = []
    for source in (pathlib.Path(torchdata_s3ext.__file__).parent / "s3").rglob("*.py"):
        text = source.read_text()
        assert "os.system(" not in text and "os.popen(" not in text, source
        if "shell=True" in text:
            shells.append(source.name)
    # pipe:COMMAND URLs run the command the user wrote, through the shell, as webdataset does
    assert shells == ["_pipe.py"]
