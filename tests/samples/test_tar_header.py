"""The header block parser against the standard library's: the same name, type and size for every header
``tarfile`` writes (any format, long names, odd characters, base-256 sizes), and the same refusals of damaged
blocks."""
import tarfile

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from torchdata_s3ext.samples.tar_header import parse_block

_FORMATS = (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT)
_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE)
_names = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), min_size=1, max_size=120)


def _standard(block: bytes):
    info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    return info.name, info.type, info.size


def _first_block(info: tarfile.TarInfo, tar_format: int) -> bytes:
    try:
        return info.tobuf(tar_format, "utf-8", "surrogateescape")[-tarfile.BLOCKSIZE:]  # the member's own header
    except ValueError:  # a name this format cannot hold
        reject()


@settings(max_examples=300, deadline=None)
@given(name=_names, kind=st.sampled_from(_TYPES), size=st.integers(0, 1 << 40), tar_format=st.sampled_from(_FORMATS))
def test_reads_what_tarfile_writes_as_tarfile_does(name, kind, size, tar_format):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    block = _first_block(info, tar_format)
    assert tuple(parse_block(block)) == _standard(block)


@settings(max_examples=300, deadline=None)
@given(name=_names, at=st.integers(0, 511), value=st.integers(0, 255), summed=st.booleans())
def test_a_changed_byte_is_read_or_refused_as_tarfile_does(name, at, value, summed):
    info = tarfile.TarInfo(name)
    info.size = 1234
    block = bytearray(_first_block(info, tarfile.USTAR_FORMAT))
    block[at] = value
    if summed and not 148 <= at < 156:  # the checksum made right again: the change reaches the fields
        block[148:156] = b"%06o\0 " % (256 + sum(block[:148]) + sum(block[156:]))
    block = bytes(block)
    try:
        expected = _standard(block)
    except tarfile.HeaderError as error:
        # Fields nothing reads (mode, owner, times, devices) are not checked: tarfile refuses a non-number there
        # that parse_block reads past; everything else it refuses, parse_block refuses with the same message.
        if str(error) == "invalid header" and not 124 <= at < 136 and not 148 <= at < 156:
            return
        with pytest.raises(type(error), match=str(error)):
            parse_block(block)
        return
    assert tuple(parse_block(block)) == expected


@pytest.mark.parametrize("block, error", [
    (b"", tarfile.EmptyHeaderError),
    (b"x" * 100, tarfile.TruncatedHeaderError),
    (bytes(512), tarfile.EOFHeaderError),
    (b"a" * 512, tarfile.InvalidHeaderError),
])
def test_refuses_what_is_no_header(block, error):
    with pytest.raises(error):
        parse_block(block)


def test_base256_sizes_and_signed_checksums():
    info = tarfile.TarInfo("big.bin")
    info.size = 1 << 36  # past what 11 octal digits hold: GNU writes it in base 256
    block = _first_block(info, tarfile.GNU_FORMAT)
    assert block[124] == 0o200
    assert parse_block(block).size == 1 << 36
    signed = tarfile.TarInfo("\u00e9t\u00e9.png")  # bytes over 127: an old tar's signed checksum
    block = bytearray(_first_block(signed, tarfile.USTAR_FORMAT))
    total = 256 + sum(b - 256 if b > 127 else b for b in block[:148] + block[156:])
    block[148:156] = b"%06o\0 " % total
    assert parse_block(bytes(block)).name == "\u00e9t\u00e9.png"
    assert _standard(bytes(block))[0] == "\u00e9t\u00e9.png"
