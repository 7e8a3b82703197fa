"""The faces of one chain of stages: the datapipes (``datapipes`` and the pipes of ``opening``, ``grouping``,
``decoding``, ``epoch_pipes``), each a plain ``IterableDataset`` (``dataset``); a ``torchdata.nodes`` node
(``nodes``, torchdata 0.10 and later); and ``DataLoader2``'s reading service (``dataloader2``, torchdata 0.9)."""
import warnings

# torchdata's StatefulDataLoader calls torch.set_vital, which torch 2.13 says is deprecated, at every iterator:
# a warning of theirs about their call, which a user of our pipes can do nothing about. Only that message.
warnings.filterwarnings("ignore", message=r"'set_vital' is deprecated", category=UserWarning)

from .dataloader2 import ExactlyOnceReadingService, has_torchdata_datapipes, reading_service  # noqa: E402  (first: load_from_tar's name)
from .datapipes import Pipe  # noqa: E402
from .dataset import StageDataset
from .decoding import PngPairDecoderIterDataPipe, SampleDecoderIterDataPipe
from .epoch_pipes import ReaderShardingIterDataPipe, SampleShufflerIterDataPipe, ShardShufflerIterDataPipe
from .grouping import WdsSampleGrouperIterDataPipe, WdsShardLoaderIterDataPipe
from .opening import S3OpenerIterDataPipe, TarLoaderIterDataPipe

__all__ = [
    "ExactlyOnceReadingService",
    "Pipe",
    "PngPairDecoderIterDataPipe",
    "ReaderShardingIterDataPipe",
    "S3OpenerIterDataPipe",
    "SampleDecoderIterDataPipe",
    "SampleShufflerIterDataPipe",
    "ShardShufflerIterDataPipe",
    "StageDataset",
    "TarLoaderIterDataPipe",
    "WdsSampleGrouperIterDataPipe",
    "WdsShardLoaderIterDataPipe",
    "has_torchdata_datapipes",
    "reading_service",
]
