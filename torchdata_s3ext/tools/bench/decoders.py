"""The decode measurement behind ``bench --decoders``: the first samples of the first shard, read once into
memory, decoded by each decoder in turn, round after round, in a process of its own; pairs/s per decoder
(median over the rounds) and its ratio to a plain PIL decode, the article's. With ``jpeg`` among the
decoders, also ``decode_sample``'s JPEG decoder against PIL, on the same images re-encoded as quality-90
JPEGs, each with a ``cls`` (an ImageNet-style ``KEY.jpg`` + ``KEY.cls`` sample).

Run as ``python -m torchdata_s3ext.tools.bench.decoders JOB.json RESULT.json`` (see ``runner.run_in_child``).
"""
import dataclasses
import functools
import io
import itertools
import json
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

from .methods import MethodContext

__all__ = ["DecodeJob", "JPEG_PIL_BASELINE", "JPEG_ROW", "PIL_BASELINE", "first_samples", "pil_pair", "jpeg_samples",
           "pil_jpeg_sample", "decode_rounds", "decoder_rows", "measure_decoders"]

#: the row every decoder is compared with: what the article's training loop does with PIL
PIL_BASELINE = "PIL (np.asarray(Image.open(..).convert('RGB')) + label)"
#: the ``--decoders`` name that adds the JPEG rows, and the row the JPEG decoder is compared with
JPEG_ROW = "jpeg"
JPEG_PIL_BASELINE = "JPEG q90 + cls: PIL (np.asarray(Image.open(..).convert('RGB')) + int)"
JPEG_QUALITY = 90


@dataclasses.dataclass(frozen=True)
class DecodeJob:
    """Which decoders to time, on how many samples of the first shard, for how many rounds."""

    context: MethodContext
    decoders: Tuple[str, ...]
    samples: int = 8
    rounds: int = 5

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "DecodeJob":
        fields = json.loads(text)
        return cls(context=MethodContext.from_dict(fields.pop("context")), decoders=tuple(fields.pop("decoders")), **fields)


def first_samples(context: MethodContext, count: int) -> List[Dict[str, Any]]:
    """The first ``count`` samples of the first shard, read through ``open_s3`` (``auto``, or ``local`` when
    there are only local paths) + ``load_wds_shards``."""
    import torchdata_s3ext  # noqa: F401  (registers open_s3 and load_wds_shards)
    from torch.utils.data.datapipes.iter import IterableWrapper

    backend, urls = ("auto", context.urls) if context.urls else ("local", context.mount_paths or ())
    pipe = IterableWrapper(list(urls[:1])).open_s3(backend=backend, config=context.s3_config()).load_wds_shards()
    return list(itertools.islice(pipe, count))


def _field(sample: Dict[str, Any], key: str) -> bytes:
    from ...samples.decode import fields_matching

    (field,) = fields_matching(key, list(sample))
    return sample[field]


def pil_pair(sample: Dict[str, Any]) -> Tuple[Any, Any]:
    """The baseline: image to an RGB array and label to an array, with PIL and nothing else."""
    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(_field(sample, "image"))).convert("RGB"))
    label = np.asarray(Image.open(io.BytesIO(_field(sample, "label"))))
    return image, label


def jpeg_samples(samples: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Each sample's image as a quality-90 JPEG (PIL's encoder, 4:2:0), with the sample's index as ``cls``."""
    from PIL import Image

    jpegs = []
    for index, sample in enumerate(samples):
        out = io.BytesIO()
        Image.open(io.BytesIO(_field(sample, "image"))).convert("RGB").save(out, format="JPEG", quality=JPEG_QUALITY)
        jpegs.append({"__key__": sample["__key__"], "__url__": sample.get("__url__"), "jpg": out.getvalue(),
                      "cls": str(index).encode()})
    return jpegs


def pil_jpeg_sample(sample: Dict[str, Any]) -> Tuple[Any, int]:
    """The JPEG baseline: the image to an RGB array with PIL, the class to an int."""
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(sample["jpg"])).convert("RGB")), int(sample["cls"])


def _jpeg_rows(samples: Sequence[Dict[str, Any]], rounds: int) -> List[Dict[str, Any]]:
    """The JPEG baseline and ``decode_sample`` (named by the JPEG decoder it runs on) on the JPEG samples."""
    from ...samples.decode import decode_sample, optional

    name = f"{JPEG_ROW} ({'simplejpeg' if optional.simplejpeg is not None else 'pil'}): decode_sample, jpg + cls"
    functions = {JPEG_PIL_BASELINE: pil_jpeg_sample, name: decode_sample}
    rows = decoder_rows(decode_rounds(jpeg_samples(samples), functions, rounds), baseline=JPEG_PIL_BASELINE)
    # The comparison lines speak of every row with a ratio as a PNG decoder against plain PIL: the JPEG
    # baseline's own 1.00 is left out of them (and of the table's "x pil", where "-" marks it).
    rows[0]["ratio_to_pil"] = None
    return rows


def decode_rounds(samples: Sequence[Any], functions: Dict[str, Callable[[Any], Any]], rounds: int) -> Dict[str, List[float]]:
    """Pairs/s of each function over ``samples``, once per round. Each round starts one function later in
    the list, so that a burst of other load on the machine does not always land on the same one."""
    names = list(functions)
    rates: Dict[str, List[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            for sample in samples:
                functions[name](sample)
            rates[name].append(len(samples) / (time.perf_counter() - start))
    return rates


def decoder_rows(rates: Dict[str, List[float]], baseline: str = PIL_BASELINE) -> List[Dict[str, Any]]:
    """One row per decoder: the median of its rounds' pairs/s, and that over ``baseline``'s (``x pil``)."""
    medians = {name: statistics.median(values) for name, values in rates.items()}
    base = medians.get(baseline)
    return [
        {"decoder": name, "pairs_per_s": median, "ratio_to_pil": median / base if base else None,
         "rounds_pairs_per_s": rates[name]}
        for name, median in medians.items()
    ]


def _image_size(sample: Dict[str, Any]) -> str:
    from ...samples.decode import read_png_header

    header = read_png_header(_field(sample, "image"))
    return f"{header.width}x{header.height}"


def measure_decoders(job: DecodeJob) -> Dict[str, Any]:
    """The decoders table's content: the samples used and a row per decoder, the PIL baseline first."""
    from ...samples.decode import decode_png_pair

    samples = first_samples(job.context, job.samples)
    if not samples:
        raise ValueError("the first shard holds no samples to decode")
    functions: Dict[str, Callable[[Any], Any]] = {PIL_BASELINE: pil_pair}
    functions.update({name: functools.partial(decode_png_pair, decoder=name) for name in job.decoders
                      if name != JPEG_ROW})
    rows = decoder_rows(decode_rounds(samples, functions, job.rounds))
    if JPEG_ROW in job.decoders:
        rows += _jpeg_rows(samples, job.rounds)
    return {"samples": len(samples), "image_size": _image_size(samples[0]), "rounds": job.rounds, "rows": rows}


if __name__ == "__main__":
    from .child import child_main

    child_main(*sys.argv[1:3], measure=lambda job_json: measure_decoders(DecodeJob.from_json(job_json)))
