"""Seed-style WebDataset shards: per sample a random RGB PNG ``KEY.image`` and a random uint8 PNG ``KEY.label``.

This is the article's synthetic dataset; the defaults here are small, ``image_size=1024`` reproduces it
(about 4.2 MB per sample).
"""
import dataclasses
import io
import tarfile
import time
from typing import Dict, Iterable, Iterator, List, Tuple

import numpy as np
from PIL import Image

__all__ = ["ShardSet", "png_bytes", "seed_samples", "write_tar", "tar_bytes"]

Sample = Tuple[str, Dict[str, bytes]]


def png_bytes(pixels: np.ndarray, compress_level: int = 6) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def seed_samples(
    num_samples: int, *, image_size: int = 16, num_classes: int = 256, seed: int = 0, first_index: int = 0,
    compress_level: int = 6,
) -> Iterator[Sample]:
    """``(key, {"image": png, "label": png})`` for samples ``first_index ..``; same seed, same bytes."""
    for index in range(first_index, first_index + num_samples):
        rng = np.random.default_rng((seed, index))
        image = rng.integers(0, 256, size=(image_size, image_size, 3), dtype=np.uint8)
        label = rng.integers(0, num_classes, size=(image_size, image_size), dtype=np.uint8)
        yield f"sample_{index:08d}", {
            "image": png_bytes(image, compress_level),
            "label": png_bytes(label, compress_level),
        }


def write_tar(fileobj: io.RawIOBase, samples: Iterable[Sample]) -> None:
    """Write ``samples`` as a WebDataset tar (members ``KEY.FIELD``) to a writable binary stream."""
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.USTAR_FORMAT) as tar:  # type: ignore[arg-type]
        for key, fields in samples:
            for field, data in fields.items():
                info = tarfile.TarInfo(f"{key}.{field}")
                info.size = len(data)
                info.mtime = int(time.time())
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))


def tar_bytes(samples: Iterable[Sample]) -> bytes:
    buffer = io.BytesIO()
    write_tar(buffer, samples)  # type: ignore[arg-type]
    return buffer.getvalue()


@dataclasses.dataclass
class ShardSet:
    """What ``wds_shards`` wrote: the shard URLs in order and every sample's fields by key."""

    urls: List[str]
    samples: Dict[str, Dict[str, bytes]]
    keys_by_url: Dict[str, List[str]]

    @property
    def keys(self) -> List[str]:
        return [key for url in self.urls for key in self.keys_by_url[url]]
