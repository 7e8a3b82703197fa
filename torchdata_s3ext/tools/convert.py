"""``torchdata-s3ext convert SRC DST``: a local folder of files -> WebDataset shards on S3 (or locally) and their
index, several writers at once.

Files are grouped into samples as webdataset groups tar members: a file's key is its path under SRC up to the
first dot of its file name, and the rest is its field (``train/0001.image.png``: sample ``train/0001``, field
``image.png``); each member is named as the file is. Files that belong to no sample (no dot in the name, a
hidden file) are skipped and counted. The samples go in key order to ``jobs`` writers, each writing its own
shards (numbers taken from one shared counter, so no two writers share one) through its own
:class:`~torchdata_s3ext.writing.ShardWriter`; one index of all of them is written once every writer is done.
"""
import dataclasses
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from .._config import S3Config
from ..samples.grouping import split_member_name
from ..writing.index import ShardIndex, ShardRecord, index_url_beside, write_shard_index
from ..writing.writer import ShardWriter

__all__ = ["SourceSample", "convert_folder", "group_files", "shard_pattern"]


@dataclasses.dataclass(frozen=True)
class SourceSample:
    """One sample's files: ``(field, path)`` in field order, and their bytes in all."""

    key: str
    files: Tuple[Tuple[str, str], ...]
    size: int


def _relative_files(folder: str) -> Iterator[Tuple[str, str]]:
    """``(path under folder with / separators, path)`` of every file under ``folder``."""
    for directory, subfolders, names in os.walk(folder):
        subfolders.sort()
        for name in names:
            path = os.path.join(directory, name)
            yield os.path.relpath(path, folder).replace(os.sep, "/"), path


def group_files(folder: str) -> Tuple[List[SourceSample], List[str]]:
    """The samples the files under ``folder`` make, in key order, and the files that belong to none.

    Raises:
        ValueError: two files of one sample that are one field to a reader (``a.JPG`` and ``a.jpg``)
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"no such folder: {folder!r}")
    fields_by_key: Dict[str, Dict[str, Tuple[str, str]]] = {}
    skipped: List[str] = []
    for relative, path in _relative_files(folder):
        split = split_member_name(relative)
        if split is None or split[0].endswith("/"):  # no sample (or a hidden file in a subfolder: key "dir/")
            skipped.append(path)
            continue
        key, field = split
        fields = fields_by_key.setdefault(key, {})
        if field in fields:
            raise ValueError(f"{fields[field][1]} and {path} are the same field {field!r} of sample {key!r} to a reader")
        fields[field] = (relative[len(key) + 1:], path)
    samples = []
    for key in sorted(fields_by_key):
        files = tuple(fields_by_key[key][field] for field in sorted(fields_by_key[key]))
        samples.append(SourceSample(key, files, sum(os.path.getsize(path) for _, path in files)))
    return samples, skipped


def shard_pattern(dest: str) -> str:
    """DST as a shard pattern: itself when it has a ``%`` field, else a folder for ``shard-%06d.tar``."""
    return dest if "%" in dest else dest.rstrip("/") + "/shard-%06d.tar"


def _read_sample(sample: SourceSample) -> Dict[str, object]:
    fields: Dict[str, object] = {"__key__": sample.key}
    for field, path in sample.files:
        with open(path, "rb") as source:
            fields[field] = source.read()
    return fields


class _Feed:
    """The samples, handed out one at a time to the writers' threads, until they run out or one writer fails."""

    def __init__(self, samples: List[SourceSample]) -> None:
        self._samples = iter(samples)
        self._lock = threading.Lock()
        self.stopped = threading.Event()

    def next(self) -> Optional[SourceSample]:
        with self._lock:
            return None if self.stopped.is_set() else next(self._samples, None)


def _run_writer(writer: ShardWriter, feed: _Feed, on_written: Callable[[int], None]) -> Dict[int, ShardRecord]:
    try:
        with writer:
            while True:
                sample = feed.next()
                if sample is None:
                    break
                writer.write(_read_sample(sample))
                on_written(sample.size)
    except BaseException:
        feed.stopped.set()  # the other writers close their shards and stop
        raise
    return writer.shards_by_number


def convert_folder(
    src: str, dest: str, *, max_bytes: int, max_samples: Optional[int], jobs: int, config: S3Config,
    part_size: int, progress: bool = True, on_skipped: Callable[[List[str]], None] = lambda skipped: None,
) -> ShardIndex:
    """Write the samples of the files under ``src`` as shards ``shard_pattern(dest)``, ``jobs`` writers at
    once, then their index; return it. ``on_skipped`` hears of the files that belong to no sample."""
    from tqdm.auto import tqdm

    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    pattern = shard_pattern(dest)
    samples, skipped = group_files(src)
    on_skipped(skipped)
    if not samples:
        raise ValueError(f"{src}: no file makes a sample (a sample's files are named KEY.FIELD)")
    numbers = itertools.count()  # shared: next() on it is atomic, so no two writers take one number
    writers = [ShardWriter(pattern, max_bytes, max_samples, part_size=part_size, shard_numbers=numbers,
                           write_index=False, config=config) for _ in range(min(jobs, len(samples)))]
    feed, lock = _Feed(samples), threading.Lock()
    with tqdm(total=sum(sample.size for sample in samples), unit="B", unit_scale=True, desc=f"writing {pattern}",
              disable=not progress) as bar:

        def on_written(size: int) -> None:
            with lock:
                bar.update(size)

        with ThreadPoolExecutor(len(writers), thread_name_prefix="convert") as pool:
            futures = [pool.submit(_run_writer, writer, feed, on_written) for writer in writers]
        shards: Dict[int, ShardRecord] = {}
        for future in futures:
            shards.update(future.result())
    return write_shard_index(index_url_beside(pattern), [shards[number] for number in sorted(shards)], config)
