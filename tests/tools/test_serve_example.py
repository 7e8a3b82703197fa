"""``serve --example``: a local server holding the bucket README's snippets read, one ``export`` line to paste,
and a clean stop on SIGTERM."""
import io
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import tarfile

import boto3
import botocore.exceptions
import pytest

from torchdata_s3ext.testing import EXAMPLE_BUCKET

TRAIN = [f"train/shard-{index:06d}.tar" for index in range(4)]
DAMAGED = ["damaged/shard-000000.tar", "damaged/shard-000001.tar"]


def _members(shard: bytes):
    with tarfile.open(fileobj=io.BytesIO(shard), mode="r|") as tar:
        return [(member.name, tar.extractfile(member).read()) for member in tar]


@pytest.fixture
def example_server():
    """``serve --example`` in a process of its own: (its lines up to "Ctrl-C stops it", the process)."""
    process = subprocess.Popen([sys.executable, "-m", "torchdata_s3ext", "serve", "--example", "--for", "120"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C stops it"):
                break
        assert lines and lines[-1].startswith("Ctrl-C stops it"), "\n".join(lines) + process.stderr.read()
        yield lines, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _client(lines):
    (export,) = [line for line in lines if line.startswith("export ")]
    env = dict(word.split("=", 1) for word in shlex.split(export)[1:])
    assert set(env) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"}
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def test_serve_example_holds_readmes_bucket_and_prints_one_export_line(example_server):
    lines, _ = example_server
    assert lines[0].startswith("moto S3 server on http://127.0.0.1:") and lines[0].endswith(f"buckets: {EXAMPLE_BUCKET}")
    client = _client(lines)
    listed = client.list_objects_v2(Bucket=EXAMPLE_BUCKET)["Contents"]
    assert sorted(entry["Key"] for entry in listed) == sorted(DAMAGED + TRAIN)
    train = [_members(client.get_object(Bucket=EXAMPLE_BUCKET, Key=key)["Body"].read()) for key in TRAIN]
    names = [name for members in train for name, _ in members]
    assert [len(members) for members in train] == [16] * 4  # 8 samples of image + label each
    assert len(set(names)) == 32 * 2 and {name.rsplit(".", 1)[1] for name in names} == {"image", "label"}
    good = client.get_object(Bucket=EXAMPLE_BUCKET, Key=DAMAGED[0])["Body"].read()
    assert len(_members(good)) == 8
    cut = client.get_object(Bucket=EXAMPLE_BUCKET, Key=DAMAGED[1])["Body"].read()
    with pytest.raises(tarfile.ReadError):
        _members(cut)


def test_serve_example_stops_cleanly_on_sigterm(example_server):
    lines, process = example_server
    client = _client(lines)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert process.stdout.read().rstrip().endswith("stopped")
    assert "Traceback" not in process.stderr.read()
    with pytest.raises(botocore.exceptions.EndpointConnectionError):  # the server is gone with it
        client.list_objects_v2(Bucket=EXAMPLE_BUCKET)


RUN_README_BLOCKS = r"""
import importlib.util, re, sys
text = open(sys.argv[1]).read()
blocks = re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
for number, code in enumerate(blocks):
    needs = [name for name in ("torchdata.nodes", "torchdata.dataloader2") if name in code]
    if any(importlib.util.find_spec(name) is None for name in needs) or "def test_" in code:
        continue  # a face this torchdata lacks; the test file is run by pytest itself
    exec(compile(code, f"README.md block {number}", "exec"), {"__name__": "__main__"})
    print(f"block {number} ran", flush=True)
"""


def test_readme_s_snippets_run_as_written_against_serve_example(example_server, tmp_path):
    lines, _ = example_server
    (export,) = [line for line in lines if line.startswith("export ")]
    env = dict(word.split("=", 1) for word in shlex.split(export)[1:])
    readme = str(pathlib.Path(__file__).resolve().parents[2] / "README.md")
    finished = subprocess.run([sys.executable, "-c", RUN_README_BLOCKS, readme], capture_output=True, text=True,
                              timeout=240, env={**os.environ, **env}, cwd=tmp_path)
    assert finished.returncode == 0, finished.stdout + finished.stderr[-3000:]
    assert finished.stdout.count(" ran") >= 5, finished.stdout
    assert "Warning" not in finished.stderr, finished.stderr  # no banner or deprecation warning of ours
