r"""The datapipe face: our pipes chain with torch's datapipes both ways, and are plain ``IterableDataset``\\ s.

``import torchdata_s3ext`` registers our functional forms (``open_s3``, ``group_wds_samples``, ...) on torch's
own ``IterDataPipe`` (``torch.utils.data.datapipes``, which torchdata 0.9's datapipes are too), so
``IterableWrapper(urls).open_s3()`` makes one of ours, and every functional form (ours, torch's ``batch`` or
``map``, torchdata 0.9's) chains onto ours. Where torchdata 0.9 is installed its ``load_from_tar`` keeps its
name; elsewhere ours takes it, with the same ``(path, stream)`` output.

Our pipes are not ``IterDataPipe`` instances, on purpose: ``DataLoader`` and ``StatefulDataLoader`` wrap every
``IterDataPipe`` in a pickling wrapper that hides ``state_dict``, and would replay an epoch from its start on
resume. A plain ``IterableDataset`` with ``state_dict()`` they take as it is, and checkpoint exactly.

Each pipe builds its stage over its source's (our pipes') stage, or over the foreign iterable it is given; the
pipe that is iterated builds the whole chain, once per process.
"""
import functools
import pickle
import warnings
from typing import Any, Optional, Type

from torch.utils.data.datapipes.datapipe import IterDataPipe

from torch.utils.data.graph_settings import apply_sharding

from ..epochs.clock import EpochClock
from ..epochs.readers import Ranks, current_reader
from ..stage import IterableStage, Stage
from .dataset import StageDataset

__all__ = ["Pipe", "functional", "registered_class", "sharded", "stage_of"]


def registered_class(name: str) -> Optional[Type[Any]]:
    """The class registered on ``IterDataPipe`` under functional name ``name``, if any."""
    function = IterDataPipe.functions.get(name)
    return function.args[0] if isinstance(function, functools.partial) and function.args else None


def functional(name: str, *, unless_taken: bool = False) -> Any:
    """Registers a :class:`Pipe` class as ``IterDataPipe``'s functional form ``name`` (and so ours); with
    ``unless_taken``, only where no other class has the name."""

    def register(cls: Type["Pipe"]) -> Type["Pipe"]:
        taken = registered_class(name)
        if taken is cls or (unless_taken and taken is not None):
            return cls
        IterDataPipe.register_datapipe_as_function(name, cls)
        return cls

    return register


def sharded(source: Any, ranks: Ranks = None) -> Any:
    """``source``, with torch's ``sharding_filter`` in it (if any) told which reader this process is, as
    ``DataLoader`` does for a dataset that is an ``IterDataPipe``: it does not for ours, which a datapipe of
    torch's before them would then give every reader whole."""
    reader, readers = current_reader(ranks)
    if isinstance(source, IterDataPipe) and readers > 1:  # (one reader: nothing to tell)
        try:
            apply_sharding(source, readers, reader)
        except (TypeError, AttributeError, pickle.PicklingError) as error:  # torch walks the graph by pickling it
            warnings.warn(f"the datapipes before {type(source).__name__} do not pickle ({error}): a sharding_filter() "
                          "among them, if any, was not told which reader this process is", stacklevel=3)
    return source


def stage_of(source: Any, clock: EpochClock, ranks: Ranks = None) -> Stage[Any]:
    """The stage of ``source``: its own, if it is one of our pipes, else the first stage over it (sharded)."""
    return source._stage(clock) if isinstance(source, Pipe) else IterableStage(sharded(source, ranks))


class Pipe(StageDataset):
    """Our datapipe (see the module docstring): a face over one stage, whose source is another pipe (ours or
    torch's) or any iterable."""

    def __init__(self, source_datapipe: Any) -> None:
        super().__init__()
        self.source_datapipe = source_datapipe

    def _stage(self, clock: EpochClock) -> Stage[Any]:
        """This pipe's stage, over its source's; the stages of a chain share the iterated pipe's ``clock``."""
        raise NotImplementedError(type(self).__name__)

    def _source_stage(self, clock: EpochClock) -> Stage[Any]:
        return stage_of(self.source_datapipe, clock, self.ranks)

    def _build(self, clock: EpochClock) -> Stage[Any]:
        return self._stage(clock)

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("__") and name in IterDataPipe.functions:
            function = functools.partial(IterDataPipe.functions[name], self)
            functools.update_wrapper(function, IterDataPipe.functions[name], assigned=("__doc__",))
            return function
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __len__(self) -> int:
        raise TypeError(f"{type(self).__name__} instance doesn't have valid length")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
