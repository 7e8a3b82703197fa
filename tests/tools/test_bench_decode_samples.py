"""The bench's ``--decode samples`` (every field with ``decode_sample``) and the JPEG rows of ``--decoders``."""
import json

import numpy as np

from torchdata_s3ext.testing import seed_samples
from torchdata_s3ext.tools.bench.decoders import JPEG_PIL_BASELINE, PIL_BASELINE, jpeg_samples, pil_jpeg_sample
from torchdata_s3ext.tools.bench.methods import DECODE_SAMPLES, ENCODED_BYTES, decoded_sample
from torchdata_s3ext.tools.cli import main

TINY = ["--shards", "2", "--samples-per-shard", "3", "--size", "16", "--jobs", "2"]
QUICK = ["--batch-size", "2", "--batches", "6", "--window", "2", "--time-limit", "60", "--num-workers", "0"]


def _article_sample():
    key, fields = next(seed_samples(1, image_size=8))
    return {"__key__": key, "__url__": "s3://bucket/shard-000000.tar", **fields}


def test_decode_samples_decodes_the_articles_extensionless_image_and_label_as_pngs():
    sample = _article_sample()
    decoded = decoded_sample(sample, DECODE_SAMPLES)
    assert decoded["image"].shape == (3, 8, 8) and decoded["label"].shape == (8, 8)
    assert decoded[ENCODED_BYTES] == len(sample["image"]) + len(sample["label"])


def test_jpeg_samples_hold_a_jpg_and_a_cls_that_the_pil_baseline_reads():
    (jpeg_sample,) = jpeg_samples([_article_sample()])
    assert jpeg_sample["jpg"][:2] == b"\xff\xd8" and jpeg_sample["cls"] == b"0"
    pixels, cls = pil_jpeg_sample(jpeg_sample)
    assert pixels.shape == (8, 8, 3) and pixels.dtype == np.uint8 and cls == 0


def test_bench_decode_samples_and_the_jpeg_row_of_decoders(tmp_path, capsys):
    dataset, out = tmp_path / "data", tmp_path / "results"
    main(["make-dataset", str(dataset), *TINY, "--no-progress"])
    code = main(["bench", str(dataset), "--methods", "local", *QUICK, "--decode", "samples",
                 "--decoders", "auto", "jpeg", "--decode-samples", "2", "--decode-rounds", "2", "--out", str(out)])
    output = capsys.readouterr().out
    assert code == 0, output
    assert "decode samples" in output
    report = json.loads((out / "results.json").read_text())
    (row,) = report["results"]
    assert row["status"] == "ok" and row["decoder"] == "samples" and row["samples"] == 12
    rows = report["decoders"]["rows"]
    names = [decoder_row["decoder"] for decoder_row in rows]
    assert names[:3] == [PIL_BASELINE, "auto", JPEG_PIL_BASELINE]
    assert names[3] == "jpeg (simplejpeg): decode_sample, jpg + cls"
    assert rows[2]["ratio_to_pil"] is None and rows[3]["ratio_to_pil"] > 0
    assert all(decoder_row["pairs_per_s"] > 0 for decoder_row in rows)
    assert JPEG_PIL_BASELINE in output[output.index("PNG decode:"):]


def test_bench_names_samples_and_jpeg_when_a_decoder_is_unknown(tmp_path, capsys):
    for option, also in (("--decode", "or samples (decode_samples) or none"), ("--decoders", "or jpeg")):
        try:
            main(["bench", str(tmp_path), "--methods", "local", option, "nope"])
        except SystemExit:
            pass
        assert also in capsys.readouterr().err
