"""Backend ``iopath``: iopath's ``S3PathHandler``, given our client so it needs no AWS profile; the object
read as iopath's ranged reads, several in flight, every one pinned to the ETag of iopath's opening GET (a
part of another version fails with "the object changed while it was read")."""
from typing import Any, BinaryIO, Optional

from ..._config import S3Config
from ...compat import iopath_read_range
from ..client.botocore_errors import botocore_errors_translated
from ..client.clients import iopath_path_manager
from ..client.pins import VersionPin
from ..client.retry import call_with_retries
from ..io.ranged import RangedReader
from ..io.ranges import check_part_length, check_range
from ..io.link_sizing import sizing_for
from ..url import parse_s3_url

__all__ = ["open_url"]


def open_url(
    url: str, config: S3Config, part_size: Optional[int] = None, concurrency: Optional[int] = None,
    memory_budget: Optional[int] = None, *,
    start: int = 0, end: Optional[int] = None, **open_kwargs: Any
) -> BinaryIO:
    """Open with iopath's chunked reader (``S3ChunkReadIO``, not its whole-object download) and read the object
    as iopath's ranged reads (sized as ``boto3``'s: within ``memory_budget``, or ``part_size`` bytes and
    ``concurrency`` in flight when either is given), each retried on a transient
    fault, like the ``fsspec`` backend (see ``ranged.py``): seekable, so ``load_from_tar()`` reads members whole.
    ``start``/``end``: the ranged reads cover bytes ``start .. end-1`` only, at the object's offsets (iopath's
    opening GET asks for the whole object, but iopath reads only its length, never its body)."""
    check_range(url, start, end)
    sizing = sizing_for(f"iopath {config.endpoint_url or config.region}", part_size, concurrency, memory_budget)
    parse_s3_url(url)
    pin = VersionPin(url)  # iopath's reader opens with a GET of the whole object: the pin learns its ETag and size

    def open_stream() -> Any:
        with botocore_errors_translated(url, config), pin.applied():
            return iopath_path_manager(config).open(url, "rb", read_chunk_size=sizing.part_size, **open_kwargs)

    stream = open_stream()  # its two GETs are retried one by one (see clients.iopath_path_manager)

    def fetch(start: int, end: int) -> bytes:
        def read_range() -> bytes:
            with botocore_errors_translated(url, config), pin.applied():
                return check_part_length(url, iopath_read_range(stream, start, end), start, end)

        # The GET is retried by the client; this loop retries a body cut or of the wrong length.
        return call_with_retries(url, config.max_attempts, read_range)

    return RangedReader(url, stream.length, fetch, start=start, end=end, sizing=sizing)  # type: ignore[return-value]
