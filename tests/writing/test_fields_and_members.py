"""A sample's fields and members, as webdataset's TarWriter writes them: same bytes, same names, and every
member reads back as the sample and field it came from."""
import io
import tarfile

import numpy as np
import pytest
import webdataset
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from torchdata_s3ext.samples.grouping import split_member_name
from torchdata_s3ext.writing.fields import encode_field
from torchdata_s3ext.writing.tar import archive_end, archive_size, encode_sample


def tar_of(samples, mtime=1_700_000_000):
    """Our bytes for ``samples``: members then the archive's end, as ShardWriter lays them out."""
    encoded = [encode_sample(sample, mtime) for sample in samples]
    members = b"".join(bytes(chunk) for one in encoded for chunk in one.chunks)
    return members + archive_end(len(members))


def webdataset_tar_of(samples, mtime=1_700_000_000):
    buffer = io.BytesIO()
    with webdataset.TarWriter(buffer, mtime=mtime) as writer:
        for sample in samples:
            writer.write(sample)
    return buffer.getvalue()


def test_a_shard_is_the_same_bytes_as_webdataset_tarwriter_writes_for_every_field_type():
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    samples = [
        {"__key__": "dir/sample_0", "image.png": rgb, "cls": 7, "meta.json": {"a": [1, 2]}, "txt": "héllo",
         "raw.bin": b"\x00\x01" * 300, "array.npy": np.arange(6, dtype=np.float32).reshape(2, 3),
         "photo.jpg": Image.fromarray(rgb), "__url__": "not written"},
        {"__key__": "dir/sample_1", "cls": 8, "txt": "x" * 600, "long_" + "f" * 120 + ".bin": b"long name"},
    ]
    assert tar_of(samples) == webdataset_tar_of(samples)


def test_members_are_key_dot_field_in_sorted_order_without_underscore_fields():
    encoded = encode_sample({"__key__": "k", "b.txt": "b", "a.txt": "a", "_private": "x", "__url__": "u"}, 0)
    assert encoded.fields == ("a.txt", "b.txt")
    names = [member.name for member in tarfile.open(fileobj=io.BytesIO(tar_of([{"__key__": "k", "b.txt": "b", "a.txt": "a"}])))]
    assert names == ["k.a.txt", "k.b.txt"]


def test_member_headers_carry_webdataset_owner_mode_and_the_given_mtime():
    (member,) = tarfile.open(fileobj=io.BytesIO(tar_of([{"__key__": "k", "cls": 1}], mtime=1234)))
    assert (member.uname, member.gname, member.mode, member.mtime, member.pax_headers) == ("bigdata", "bigdata", 0o444, 1234, {})


@pytest.mark.parametrize("value, expected", [
    (b"as is", b"as is"), (bytearray(b"ba"), b"ba"), ("é", "é".encode()), (3, b"3"), (np.int64(-12), b"-12"),
    ({"a": 1}, b'{"a": 1}'), ([1, "x"], b'[1, "x"]'),
])
def test_encode_field_follows_webdataset_conventions(value, expected):
    assert bytes(encode_field("any.ext", value)) == expected


def test_encode_field_writes_arrays_as_npy_that_numpy_loads_back():
    array = np.arange(12, dtype=np.int16).reshape(3, 4)
    assert np.array_equal(np.load(io.BytesIO(encode_field("x.npy", array))), array)


@pytest.mark.parametrize("field, pil_format", [("image.png", "PNG"), ("jpg", "JPEG"), ("x.ppm", "PPM"),
                                               ("x.tiff", "TIFF"), ("x.webp", "WEBP")])
def test_encode_field_encodes_images_in_the_format_their_extension_names(field, pil_format):
    pixels = np.full((8, 8, 3), 200, dtype=np.uint8)
    with Image.open(io.BytesIO(encode_field(field, pixels))) as image:
        assert image.format == pil_format and image.size == (8, 8)


def test_encode_field_passes_memoryviews_of_any_format_as_their_bytes():
    array = np.arange(4, dtype=np.int32)
    assert bytes(encode_field("raw", memoryview(array))) == array.tobytes()


@pytest.mark.parametrize("field, value, message", [
    ("cls", True, "a bool has no agreed encoding"),
    ("score", 0.5, "cannot encode a float"),
    ("photo.bin", Image.new("RGB", (2, 2)), "a PIL image needs an image extension"),
    ("image.png", np.zeros((2, 2), dtype=np.float32), "an image array must be uint8"),
    ("image.png", np.zeros((2, 2, 2), dtype=np.uint8), r"must be \(H, W\)"),
])
def test_encode_sample_refuses_values_without_an_encoding_naming_key_and_field(field, value, message):
    with pytest.raises(TypeError, match=rf"sample 'k', field '{field}': .*{message}"):
        encode_sample({"__key__": "k", field: value})


@pytest.mark.parametrize("sample, error, message", [
    ({"cls": 1}, ValueError, "a sample needs a '__key__'"),
    ({"__key__": 3, "cls": 1}, TypeError, "a sample's __key__ must be a str"),
    ({"__key__": "", "cls": 1}, ValueError, "must be a non-empty string"),
    ({"__key__": "a.b", "cls": 1}, ValueError, r"member 'a.b.cls' would be read as sample 'a', field 'b.cls'"),
    ({"__key__": "a", "x/y": 1}, ValueError, r"member 'a.x/y' would be read as no sample at all"),
    ({"__key__": "a", "x.y/z.w": 1}, ValueError, r"member 'a.x.y/z.w' would be read as sample 'a.x.y/z', field 'w'"),
    ({"__key__": "a", "": 1}, ValueError, "a field name must be a non-empty string"),
    ({"__key__": "../a", "cls": 1}, ValueError, "is not a plain relative path"),
    ({"__key__": "/a", "cls": 1}, ValueError, "is not a plain relative path"),
    ({"__key__": "./a", "cls": 1}, ValueError, "is not a plain relative path"),
    ({"__key__": "a//b", "cls": 1}, ValueError, "is not a plain relative path"),
    ({"__key__": "a", "__url__": "u"}, ValueError, "sample 'a' has no field to write"),
])
def test_encode_sample_refuses_keys_and_fields_that_would_read_back_as_others(sample, error, message):
    with pytest.raises(error, match=message):
        encode_sample(sample)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[a-z0-9_/-]{0,6}[a-z0-9_-]{1,6}", fullmatch=True), st.from_regex(r"[A-Za-z0-9_.-]{1,8}", fullmatch=True))
def test_every_member_written_reads_back_as_its_key_and_field(key, field):
    try:
        encoded = encode_sample({"__key__": key, field: b"x"})
    except ValueError:
        return  # refused before anything was written
    (member,) = tarfile.open(fileobj=io.BytesIO(b"".join(map(bytes, encoded.chunks)) + archive_end(encoded.size)))
    assert split_member_name(member.name) == (key, field.lower())


@given(st.integers(0, 10 << 20))
def test_archive_size_is_the_smallest_whole_record_holding_the_members_and_the_end_blocks(members_size):
    size = archive_size(members_size)
    assert size % 10240 == 0 and size >= members_size + 1024 > size - 10240


def test_sizes_told_up_front_are_the_bytes_written():
    samples = [{"__key__": f"s{i}", "bin": b"x" * (i * 700), "cls": i} for i in range(30)]
    encoded = [encode_sample(sample, 0) for sample in samples]
    assert sum(one.size for one in encoded) == sum(len(bytes(chunk)) for one in encoded for chunk in one.chunks)
    assert len(tar_of(samples)) == archive_size(sum(one.size for one in encoded))
