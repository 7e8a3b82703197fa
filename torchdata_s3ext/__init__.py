"""torchdata-s3ext: train PyTorch models straight from S3.

Importing this package registers the functional forms ``open_s3``, ``group_wds_samples`` and
``decode_png_pair`` on torchdata's ``IterDataPipe``.
"""
import warnings

with warnings.catch_warnings():
    # torchdata 0.9 warns on import that datapipes are deprecated; we depend on them knowingly (README).
    warnings.filterwarnings("ignore", message=r"[\s\S]*'datapipes', 'dataloader2' modules are deprecated")
    import torchdata.datapipes  # noqa: F401

from ._config import S3Config
from ._opener import S3OpenerIterDataPipe
from ._version import __version__
from .backends import backend_names

S3Opener = S3OpenerIterDataPipe

__all__ = [
    "S3Config",
    "S3Opener",
    "S3OpenerIterDataPipe",
    "backend_names",
    "__version__",
]
