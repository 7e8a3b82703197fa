"""SageMaker Pipe Mode: tar archives written back to back into a FIFO by a process that behaves like the agent
(slowly, dying mid-archive, one FIFO per epoch), read by ``sagemaker_pipe`` exactly once, one reader per FIFO."""
import io
import multiprocessing
import os
import pickle
import signal
import tarfile
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
import torch
from torch.utils.data import DataLoader

from torchdata_s3ext.sagemaker import PipeModeChannelIterDataPipe, sagemaker_pipe
from torchdata_s3ext.sagemaker_fifo import fifo_path, open_fifo
from torchdata_s3ext.samples.concatenated import archive_samples
from torchdata_s3ext.samples.policy import ErrorCounts
from torchdata_s3ext.testing import seed_samples, tar_bytes

pytestmark = pytest.mark.timeout(60)

SAMPLES_PER_ARCHIVE = 5
Sample = Tuple[str, Dict[str, bytes]]


def archives(count: int, first_index: int = 0) -> List[List[Sample]]:
    return [
        list(seed_samples(SAMPLES_PER_ARCHIVE, image_size=8, first_index=first_index + number * SAMPLES_PER_ARCHIVE))
        for number in range(count)
    ]


def keys(samples: Sequence[Sample]) -> List[str]:
    return [key for key, _ in samples]


def damaged_header(archive: bytes, member_number: int) -> bytes:
    """``archive`` with the checksum of its ``member_number``-th header broken."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        offset = tar.getmembers()[member_number].offset
    damaged = bytearray(archive)
    damaged[offset + 148] ^= 0x7F  # inside the header's checksum field
    return bytes(damaged)


def agent(
    input_dir: str, channel: str, epochs: List[bytes], chunk_size: int, pause: float, die_after: Optional[int]
) -> None:
    """What SageMaker's agent does: per epoch, make the FIFO ``<channel>_<epoch>``, write the epoch's objects
    into it (here already joined) in ``chunk_size`` pieces, then close it; with ``die_after``, be killed
    after that many bytes of the last epoch."""
    for epoch, stream in enumerate(epochs):
        path = os.path.join(input_dir, f"{channel}_{epoch}")
        os.mkfifo(path)
        with open(path, "wb", buffering=0) as fifo:
            end = die_after if die_after is not None and epoch == len(epochs) - 1 else len(stream)
            for start in range(0, end, chunk_size):
                fifo.write(stream[start:min(start + chunk_size, end)])
                time.sleep(pause)
            if end < len(stream):
                os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture
def start_agent(tmp_path) -> Iterator:
    """Start an agent process writing ``epochs`` (each a list of objects) for channel ``train`` in tmp_path."""
    processes = []

    def start(epochs: List[List[bytes]], chunk_size: int = 1 << 16, pause: float = 0.0,
              die_after: Optional[int] = None):
        streams = [b"".join(objects) for objects in epochs]
        process = multiprocessing.get_context("fork").Process(
            target=agent, args=(str(tmp_path), "train", streams, chunk_size, pause, die_after), daemon=True
        )
        process.start()
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join(timeout=10)


def read_raw(tmp_path, **kwargs) -> Tuple[List[Dict[str, object]], ErrorCounts]:
    pipe = sagemaker_pipe("train", input_dir=str(tmp_path), decode=False, shuffle=False, timeout=20, **kwargs)
    return list(pipe), pipe.error_counts


def test_sagemaker_pipe_reads_every_archive_written_back_to_back(tmp_path, start_agent):
    written = archives(4)
    start_agent([[tar_bytes(archive) for archive in written]])
    samples, counts = read_raw(tmp_path)
    assert [sample["__key__"] for sample in samples] == [key for archive in written for key in keys(archive)]
    fifo = os.path.join(str(tmp_path), "train_0")
    assert [sample["__url__"] for sample in samples] == [
        f"pipe-mode:{fifo}#{number}" for number in range(4) for _ in range(SAMPLES_PER_ARCHIVE)
    ]
    expected = {key: fields for archive in written for key, fields in archive}
    assert all(sample["image"] == expected[sample["__key__"]]["image"] for sample in samples)
    assert counts.total() == 0


def test_sagemaker_pipe_reads_slow_small_writes_decoded_and_shuffled_each_sample_once(tmp_path, start_agent):
    written = archives(3)
    start_agent([[tar_bytes(archive) for archive in written]], chunk_size=700, pause=0.002)  # chunks cut blocks
    pipe = sagemaker_pipe("train", input_dir=str(tmp_path), shuffle_buffer=8, seed=0, timeout=20)
    samples = list(pipe)
    assert sorted(sample["__key__"] for sample in samples) == [key for archive in written for key in keys(archive)]
    assert all(sample["image"].shape == (3, 8, 8) and sample["image"].dtype == torch.uint8 for sample in samples)
    assert all(sample["label"].shape == (8, 8) for sample in samples)


def test_sagemaker_pipe_keeps_complete_archives_when_the_agent_dies_mid_archive(tmp_path, start_agent):
    written = [tar_bytes(archive) for archive in archives(4)]
    cut = sum(map(len, written[:3])) + len(written[3]) // 2
    start_agent([written], chunk_size=1000, die_after=cut)
    samples, counts = read_raw(tmp_path, on_error="skip")
    delivered = [sample["__key__"] for sample in samples]
    complete = [key for archive in archives(3) for key in keys(archive)]
    assert delivered[: len(complete)] == complete
    assert set(delivered[len(complete):]) < set(keys(archives(4)[3]))  # only whole samples before the cut
    assert counts.bad_shards == 1 and counts.total() == 1


def test_sagemaker_pipe_raises_naming_the_cut_archive_under_raise(tmp_path, start_agent):
    written = [tar_bytes(archive) for archive in archives(2)]
    start_agent([written], die_after=len(written[0]) + 700)
    pipe = sagemaker_pipe("train", input_dir=str(tmp_path), decode=False, shuffle=False, timeout=20)
    delivered = []
    with pytest.raises(tarfile.ReadError, match=r"train_0#1"):
        for sample in pipe:
            delivered.append(sample["__key__"])
    assert delivered == keys(archives(1)[0])
    assert pipe.error_counts.bad_shards == 1


def test_sagemaker_pipe_skips_a_damaged_archive_in_the_middle_once(tmp_path, start_agent):
    written = archives(4)
    objects = [tar_bytes(archive) for archive in written]
    objects[1] = damaged_header(objects[1], member_number=4)  # the third sample's first member
    start_agent([objects])
    samples, counts = read_raw(tmp_path, on_error="skip")
    delivered = [sample["__key__"] for sample in samples]
    others = [key for number in (0, 2, 3) for key in keys(written[number])]
    assert [key for key in delivered if key not in keys(written[1])] == others
    assert set(delivered) - set(others) <= set(keys(written[1])[:2])  # of the damaged one, only before the damage
    assert len(delivered) == len(set(delivered))
    assert counts.bad_shards == 1 and counts.total() == 1
    assert {sample["__url__"].rsplit("#", 1)[1] for sample in samples} >= {"0", "2", "3"}


def test_sagemaker_pipe_counts_epochs_from_zero_and_reads_each_epochs_fifo(tmp_path, start_agent):
    epoch_0, epoch_1 = archives(2), archives(2, first_index=100)
    start_agent([[tar_bytes(archive) for archive in epoch_0], [tar_bytes(archive) for archive in epoch_1]])
    pipe = sagemaker_pipe("train", input_dir=str(tmp_path), decode=False, shuffle_buffer=4, seed=1, timeout=20)
    for epoch, written in enumerate([epoch_0, epoch_1]):
        samples = list(pipe)
        assert sorted(sample["__key__"] for sample in samples) == [key for archive in written for key in keys(archive)]
        assert {sample["__url__"].rsplit("#", 1)[0] for sample in samples} == {f"pipe-mode:{tmp_path}/train_{epoch}"}


def test_sagemaker_pipe_under_a_one_worker_dataloader_reads_fifo_of_each_epoch(tmp_path, start_agent):
    epoch_0, epoch_1 = archives(2), archives(1, first_index=100)
    start_agent([[tar_bytes(archive) for archive in epoch_0], [tar_bytes(archive) for archive in epoch_1]])
    pipe = sagemaker_pipe("train", input_dir=str(tmp_path), decode=False, timeout=20)
    loader = DataLoader(pipe, batch_size=None, num_workers=1, multiprocessing_context="fork")
    for written in [epoch_0, epoch_1]:
        assert sorted(sample["__key__"] for sample in loader) == [key for archive in written for key in keys(archive)]


def test_sagemaker_pipe_refuses_several_dataloader_workers_naming_the_fifo(tmp_path):
    pipe = sagemaker_pipe("train", input_dir=str(tmp_path), decode=False, timeout=1)
    loader = DataLoader(pipe, batch_size=None, num_workers=2, multiprocessing_context="fork")
    advice = r"2 DataLoader workers .*train_0'.*channel=f'train\{rank\}'.*num_workers=0 or 1"
    with pytest.raises(ValueError, match=advice):
        list(loader)


def test_sagemaker_pipe_refuses_a_second_reader_of_an_open_fifo(tmp_path, start_agent):
    start_agent([[tar_bytes(archive) for archive in archives(2)]], chunk_size=512, pause=0.01)
    first = iter(sagemaker_pipe("train", input_dir=str(tmp_path), decode=False, shuffle=False, timeout=20))
    next(first)
    with pytest.raises(ValueError, match=r"another reader has it open.*train_0"):
        next(iter(sagemaker_pipe("train", input_dir=str(tmp_path), decode=False, timeout=20)))
    assert len([next(first)] + list(first)) == 2 * SAMPLES_PER_ARCHIVE - 1


def test_open_fifo_refuses_a_regular_file(tmp_path):
    path = tmp_path / "train_0"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"train_0' is a regular file, not a FIFO"):
        open_fifo(str(path), timeout=1)


def test_open_fifo_gives_up_when_no_fifo_appears_and_names_file_mode(tmp_path):
    (tmp_path / "train").mkdir()
    started = time.monotonic()
    with pytest.raises(FileNotFoundError, match=r"within 0.3 s.*File mode") as raised:
        open_fifo(fifo_path("train", 0, str(tmp_path)), timeout=0.3)
    assert raised.value.filename.endswith("train_0") and time.monotonic() - started < 5


def test_open_fifo_gives_up_when_no_writer_comes(tmp_path):
    os.mkfifo(tmp_path / "train_0")
    with pytest.raises(TimeoutError, match=r"no writer"):
        open_fifo(str(tmp_path / "train_0"), timeout=0.3)


def test_fifo_path_refuses_a_bad_channel_or_epoch():
    with pytest.raises(ValueError, match=r"channel must be"):
        fifo_path("a/b", 0)
    with pytest.raises(ValueError, match=r"epoch must be an int >= 0"):
        sagemaker_pipe("train", epoch=-1)


def test_pipe_mode_channel_pipe_pickles(tmp_path):
    pipe = pickle.loads(pickle.dumps(sagemaker_pipe("train", input_dir=str(tmp_path), seed=3)))
    channel = pipe.source_datapipe.source_datapipe  # decode_png_pair <- shuffle_samples <- the channel
    assert isinstance(channel, PipeModeChannelIterDataPipe)
    assert (channel.channel, channel.input_dir, channel.epoch) == ("train", str(tmp_path), None)


@pytest.mark.parametrize("between", [b'{"manifest": true}', b"\x1f\x8b\x08" + bytes(2045)], ids=["json", "gzip"])
def test_archive_samples_go_on_after_an_object_that_is_not_a_plain_tar(between):
    written = archives(3)
    objects = [tar_bytes(archive) for archive in written]
    counts = ErrorCounts()
    stream = io.BytesIO(objects[0] + between + objects[1] + objects[2])
    samples = archive_samples("pipe-mode:f", stream, on_error="skip", error_counts=counts)
    delivered = [sample["__key__"] for sample in samples]
    # The archive right after the object is lost only when no zero blocks lie between them (see concatenated).
    assert delivered[:SAMPLES_PER_ARCHIVE] == keys(written[0]) and delivered[-SAMPLES_PER_ARCHIVE:] == keys(written[2])
    assert counts.bad_shards == 1
