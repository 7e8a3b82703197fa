"""webdataset's ``pipe:COMMAND`` URLs through ``open_s3`` (``auto`` and the ``pipe`` backend), ``list_shards`` and
``wds_pipe``, with real processes: exact bytes, failures that name the command, closing that stops it."""
import os
import pickle
import shlex
import subprocess
import sys
import tarfile
import threading
import time

import pytest
from torch.utils.data.datapipes.iter import IterableWrapper

import torchdata_s3ext  # noqa: F401  (registers open_s3 and the sample pipes)
from torchdata_s3ext import S3Config, list_shards, wds_pipe
from torchdata_s3ext.s3.backends import backend_for_url
from torchdata_s3ext.s3.settings import split_s3_settings
from torchdata_s3ext.testing import seed_samples, tar_bytes


@pytest.fixture
def local_tar(tmp_path):
    """``(path, tar bytes, samples)`` of a three-sample shard on disk."""
    samples = list(seed_samples(3))
    path = tmp_path / "shard-000000.tar"
    path.write_bytes(tar_bytes(samples))
    return str(path), path.read_bytes(), samples


def only_stream(url, **open_s3_kwargs):
    ((_, stream),) = list(IterableWrapper([url]).open_s3(**open_s3_kwargs))
    return stream


def read_url(url, **open_s3_kwargs):
    """The whole stream of ``url``, closed after (a StreamWrapper closes its stream when it is collected)."""
    stream = only_stream(url, **open_s3_kwargs)
    try:
        return stream.read()
    finally:
        stream.close()


def process_is_running(pid):
    """Whether ``pid`` is alive: a zombie (dead, reaped by nobody yet) does not count."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("backend", ["auto", "pipe"])
def test_pipe_cat_delivers_the_exact_bytes_of_a_local_tar(backend, local_tar):
    path, data, _ = local_tar
    stream = only_stream(f"pipe:cat {shlex.quote(path)}", backend=backend)
    assert stream.read() == data
    assert stream.read() == b""
    stream.close()


def test_pipe_cat_through_load_from_tar_and_group_wds_samples(local_tar):
    path, _, samples = local_tar
    url = f"pipe:cat {shlex.quote(path)}"
    got = list(IterableWrapper([url]).open_s3().load_from_tar().group_wds_samples())
    assert [(s["__key__"], s["__url__"], s["image"], s["label"]) for s in got] == [
        (key, url, fields["image"], fields["label"]) for key, fields in samples
    ]


def test_pipe_cat_through_load_wds_shards(local_tar):
    path, _, samples = local_tar
    url = f"pipe:cat {shlex.quote(path)}"
    got = list(IterableWrapper([url]).open_s3(backend="pipe").load_wds_shards())
    assert [(s["__key__"], s["__url__"], s["image"], s["label"]) for s in got] == [
        (key, url, fields["image"], fields["label"]) for key, fields in samples
    ]


def test_pipe_command_exiting_1_before_any_byte_raises_naming_command_status_and_stderr():
    url = "pipe:echo 'no such shard here' >&2; exit 1"
    with pytest.raises(OSError, match=r"the command \"echo 'no such shard here' >&2; exit 1\" failed: exited with "
                                      r"status 1 after 0 bytes; stderr: no such shard here"):
        list(IterableWrapper([url]).open_s3().load_from_tar())


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_pipe_command_failing_after_half_a_tar_raises_instead_of_a_short_shard(on_error, local_tar):
    path, data, _ = local_tar
    half = len(data) // 2
    command = f"sh -c 'head -c {half} {shlex.quote(path)}; echo cut short >&2; exit 3'"
    # A store failure, not bad data: it raises whatever on_error says.
    with pytest.raises(OSError, match=rf"exited with status 3 after {half} bytes; stderr: cut short") as error:
        list(IterableWrapper([f"pipe:{command}"]).open_s3().load_wds_shards(on_error=on_error))
    assert command in str(error.value)
    stream = only_stream(f"pipe:{command}")
    assert stream.read(half) == data[:half]
    with pytest.raises(OSError, match="exited with status 3"):  # the status is read before the last b""
        stream.read()


def test_pipe_stderr_in_the_error_is_its_tail_and_capped():
    command = "for i in $(seq 1 3000); do echo line-$i >&2; done; exit 2"
    with pytest.raises(OSError, match=r"(?s)stderr: \[\.\.\.\] line-\d+\n.*\nline-3000: 'pipe:") as error:
        read_url(f"pipe:{command}")
    assert "line-1\n" not in str(error.value) and len(str(error.value)) < 5000


@pytest.mark.parametrize("command, outcome", [
    ("kill -KILL $$", "was killed by signal SIGKILL after 0 bytes"),
    ("cat {path}; kill -TERM $$", r"was killed by signal SIGTERM after \d+ bytes"),  # after a whole tar, too
])
def test_pipe_command_killed_by_a_signal_raises_naming_the_signal(command, outcome, local_tar):
    path, _, _ = local_tar
    command = command.format(path=shlex.quote(path))
    with pytest.raises(OSError, match=rf"the command .* failed: {outcome}"):
        list(IterableWrapper([f"pipe:{command}"]).open_s3().load_wds_shards())


@pytest.mark.timeout(60)
def test_closing_after_the_first_member_kills_a_command_that_writes_forever(local_tar):
    path, _, samples = local_tar
    stream = only_stream(f"pipe:cat {shlex.quote(path)}; exec yes")
    tar = tarfile.open(fileobj=stream, mode="r|")
    member = tar.next()
    assert tar.extractfile(member).read() == samples[0][1]["image"]
    started = time.monotonic()
    stream.close()
    assert time.monotonic() - started < 5
    assert not os.path.exists(f"/proc/{stream.pid}")  # killed and reaped: not even a zombie of ours


@pytest.mark.timeout(60)
def test_closing_from_another_thread_stops_a_command_that_hangs_without_output(tmp_path):
    pid_file = tmp_path / "sleep.pid"
    stream = only_stream(f"pipe:sleep 600 & echo $! > {shlex.quote(str(pid_file))}; wait")
    outcome = []

    def read():
        try:
            outcome.append(stream.read(1))
        except OSError as error:
            outcome.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    while not pid_file.exists() or not pid_file.read_text().strip():
        time.sleep(0.01)
    time.sleep(0.2)
    assert reader.is_alive()  # blocked: the command writes nothing, and there is no timeout
    stream.close()
    reader.join(10)
    assert not reader.is_alive()
    assert isinstance(outcome[0], OSError) and "the stream was closed" in str(outcome[0])  # never a silent b""
    assert not os.path.exists(f"/proc/{stream.pid}")
    sleep_pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while process_is_running(sleep_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_is_running(sleep_pid)  # the whole process group was killed, not only the shell


def test_an_s3_key_with_shell_metacharacters_goes_to_boto3_never_to_a_shell(s3_server, s3_bucket, tmp_path, monkeypatch):
    import boto3

    marker = tmp_path / "pwned"
    url = f"s3://{s3_bucket}/shard;touch {marker};rm -rf {tmp_path}/x;.tar"
    data = tar_bytes(seed_samples(1))
    boto3.client("s3").put_object(Bucket=s3_bucket, Key=url.split("/", 3)[3], Body=data)

    def no_process(*args, **kwargs):
        raise AssertionError(f"a process was started: {args!r}")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    assert backend_for_url("auto", url) == "boto3"
    assert list_shards([url]) == [url]
    assert read_url(url) == data
    assert not marker.exists()
    with pytest.raises(ValueError, match="not a pipe: URL"):
        only_stream(url, backend="pipe")


def test_wds_pipe_reads_a_list_of_pipe_specs_each_sample_once(tmp_path):
    a = list(seed_samples(3))
    b = list(seed_samples(2, first_index=3))
    (tmp_path / "a.tar").write_bytes(tar_bytes(a))
    (tmp_path / "b.tar").write_bytes(tar_bytes(b))
    urls = [f"pipe:cat {shlex.quote(str(tmp_path / name))}" for name in ("a.tar", "b.tar")]
    got = [(sample["__key__"], sample["__url__"]) for sample in wds_pipe(urls, shuffle=False, decode=False)]
    assert got == [(key, urls[0]) for key, _ in a] + [(key, urls[1]) for key, _ in b]
    assert len(list(wds_pipe(urls, shuffle=False))) == 5  # decoded too


def test_list_shards_takes_pipe_specs_as_they_are_in_order_with_others(tmp_path):
    (tmp_path / "x.tar").write_bytes(b"")
    specs = ["pipe:cat c.tar", "s3://bkt/shard-{0..1}.tar", "pipe:cat {a,b}.tar | awk '{print}'", str(tmp_path)]
    assert list_shards(specs) == ["pipe:cat c.tar", "s3://bkt/shard-0.tar", "s3://bkt/shard-1.tar",
                                  "pipe:cat {a,b}.tar | awk '{print}'", str(tmp_path / "x.tar")]
    with pytest.raises(ValueError, match="a pipe: URL needs a command"):
        list_shards(["pipe: "])


def test_open_s3_needs_no_s3_settings_for_pipe_urls_and_ignores_s3config(local_tar, monkeypatch):
    path, data, _ = local_tar
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    url = f"pipe:cat {shlex.quote(path)}"
    assert read_url(url) == data
    unreachable = S3Config(endpoint_url="http://127.0.0.1:9", anonymous=True, max_attempts=1)
    assert read_url(url, backend="pipe", config=unreachable, buffer_size=4096) == data
    # Under "auto" the options are boto3's; a pipe: URL opens with the pipe backend's defaults.
    assert read_url(url, backend="auto", part_size=1 << 20) == data


def test_pipe_backend_options_are_checked_when_the_pipe_is_made():
    assert split_s3_settings("pipe", {"buffer_size": 1 << 16, "anonymous": True}) == (
        {"anonymous": True}, {"buffer_size": 1 << 16})
    with pytest.raises(TypeError, match=r"unknown keyword argument 'buffer_sise' for backend 'pipe' \(did you mean"):
        IterableWrapper(["pipe:true"]).open_s3(backend="pipe", buffer_sise=1)


def test_s3_backends_refuse_pipe_urls_naming_the_ones_that_open_them():
    with pytest.raises(ValueError, match=r"not an S3 URL .* for backend 'boto3' \(pipe: URLs open with backend='auto'"):
        only_stream("pipe:cat shard.tar", backend="boto3")


def test_open_s3_of_pipe_urls_pickles_and_restarts(local_tar):
    path, data, _ = local_tar
    dp = pickle.loads(pickle.dumps(IterableWrapper([f"pipe:cat {shlex.quote(path)}"] * 2).open_s3()))
    first = next(iter(dp))[1]
    first.close()
    assert [stream.read() for _, stream in dp] == [data, data]


@pytest.mark.timeout(60)
def test_pipe_aws_s3_cp_reads_shards_from_the_local_server(s3_server, wds_shards):
    shards = wds_shards(num_shards=2, samples_per_shard=3)
    aws = shlex.quote(os.path.join(os.path.dirname(sys.executable), "aws"))
    urls = [f"pipe:{aws} s3 cp --endpoint-url {s3_server.endpoint_url} {url} -" for url in shards.urls]
    got = list(IterableWrapper(urls).open_s3().load_from_tar().group_wds_samples())
    assert [sample["__key__"] for sample in got] == shards.keys
    assert [sample["__url__"] for sample in got] == [url for url, shard in zip(urls, shards.urls)
                                                     for _ in shards.keys_by_url[shard]]
    assert all(sample["image"] == shards.samples[sample["__key__"]]["image"] for sample in got)


@pytest.mark.timeout(60)
def test_wds_pipe_of_pipe_specs_under_dataloader_workers_yields_each_sample_once(tmp_path):
    from torch.utils.data import DataLoader

    urls, keys = [], []
    for index in range(3):
        samples = list(seed_samples(2, first_index=2 * index))
        (tmp_path / f"{index}.tar").write_bytes(tar_bytes(samples))
        urls.append(f"pipe:cat {shlex.quote(str(tmp_path / f'{index}.tar'))}")
        keys += [key for key, _ in samples]
    loader = DataLoader(wds_pipe(urls, seed=0, decode=False), batch_size=None, num_workers=2,
                        multiprocessing_context="fork")
    assert sorted(sample["__key__"] for sample in loader) == sorted(keys)
