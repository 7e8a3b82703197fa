"""Samples and checks the writing tests share (imported by name: pytest puts this folder on sys.path)."""
import os
from typing import Any, Dict, List

MIB = 1 << 20
#: S3's smallest part: shards of a few MiB are multipart uploads of two parts or more
PART_SIZE = 5 * MIB


def mib_samples(count: int, first: int = 0) -> List[Dict[str, Any]]:
    """Samples of about 1 MiB each (random bytes and a class), keys ``sample_00000`` ..."""
    return [{"__key__": f"sample_{index:05d}", "bin": os.urandom(MIB - 1000 + index), "cls": index}
            for index in range(first, first + count)]


def as_written(samples: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """What a reader gives back for ``mib_samples`` undecoded."""
    return [{"__key__": sample["__key__"], "bin": sample["bin"], "cls": str(sample["cls"]).encode()} for sample in samples]


def without_url(samples) -> List[Dict[str, Any]]:
    return [{key: value for key, value in sample.items() if key != "__url__"} for sample in samples]
