"""Every sample exactly once per epoch, a new order each epoch, the same order for the same seed: in process,
over DataLoader workers (fork and spawn), on plain ``DataLoader`` and on ``DataLoader2`` + our reading service
(where torchdata 0.9 is installed)."""
import os
import pickle
from typing import Any, List, Optional, Tuple

import pytest
from torch.utils.data import DataLoader
from torch.utils.data.datapipes.iter import IterableWrapper

import torchdata_s3ext  # noqa: F401  (registers open_s3)
from torchdata_s3ext import epochs as _sharding
from torchdata_s3ext import reading_service
from torchdata_s3ext.epochs.equalizer import RankEqualizer
from torchdata_s3ext.epochs.readers import preflight_warning
from torchdata_s3ext.epochs.seeds import epoch_seed
from torchdata_s3ext.faces.dataloader2 import has_torchdata_datapipes

#: uneven shards, one empty: 10 samples in 5 shards, which divide by no reader count tried here
SHARD_SIZES = [3, 1, 0, 2, 4]


def _is_image_member(member: Tuple[str, object]) -> bool:
    return member[0].endswith(".image")


def _sample_key(member: Tuple[str, object]) -> str:
    name, stream = member
    stream.read()  # type: ignore[attr-defined]
    stream.close()  # type: ignore[attr-defined]
    return os.path.basename(name).rsplit(".", 1)[0]


def sample_key_pipe(shard_urls: List[str], seed: Optional[int] = None, buffer_size: int = 3, **ranks: int) -> Any:
    """Our shuffling and sharding around open_s3 + load_from_tar, one sample key per sample (no grouping)."""
    return (
        IterableWrapper(shard_urls)
        .shuffle_shards(seed=seed)
        .shard_across_readers(**ranks)
        .open_s3()
        .load_from_tar()
        .filter(_is_image_member)
        .map(_sample_key)
        .shuffle_samples(buffer_size=buffer_size, seed=seed)
    )


def two_epochs_dataloader2(pipe: Any, num_workers: int, context: Optional[str] = None, **kwargs) -> List[List[str]]:
    from torchdata.dataloader2 import DataLoader2

    service = reading_service(num_workers, multiprocessing_context=context, timeout=60 if num_workers else 0, **kwargs)
    with DataLoader2(pipe, reading_service=service) as loader:
        return [list(loader) for _ in range(2)]


def two_epochs_dataloader(pipe: Any, num_workers: int, context: Optional[str] = None, **kwargs) -> List[List[str]]:
    loader = DataLoader(
        pipe, batch_size=None, num_workers=num_workers, multiprocessing_context=context if num_workers else None,
        timeout=60 if num_workers else 0, **kwargs,
    )
    return [list(loader) for _ in range(2)]


LOADERS = [pytest.param(two_epochs_dataloader2, marks=pytest.mark.dataloader2, id="dataloader2"),
           pytest.param(two_epochs_dataloader, id="dataloader")]


def assert_exactly_once_in_fresh_orders(epochs: List[List[str]], keys: List[str]) -> None:
    for epoch in epochs:
        assert sorted(epoch) == sorted(keys), "a sample is missing or repeated"
    assert epochs[0] != epochs[1], "the second epoch repeated the first one's order"


@pytest.fixture
def uneven_shards(wds_shards):
    return wds_shards(samples_per_shard_list=SHARD_SIZES, image_size=8)


@pytest.mark.parametrize("num_workers", [0, 1, 2])
@pytest.mark.parametrize("two_epochs", LOADERS)
def test_every_sample_once_per_epoch_with_uneven_and_empty_shards(uneven_shards, two_epochs, num_workers):
    context = "fork" if num_workers else None
    epochs = two_epochs(sample_key_pipe(uneven_shards.urls, seed=7), num_workers, context=context)
    assert_exactly_once_in_fresh_orders(epochs, uneven_shards.keys)
    assert two_epochs(sample_key_pipe(uneven_shards.urls, seed=7), num_workers, context=context) == epochs
    assert two_epochs(sample_key_pipe(uneven_shards.urls, seed=8), num_workers, context=context) != epochs


@pytest.mark.parametrize("two_epochs", LOADERS)
def test_every_sample_once_per_epoch_under_spawn(uneven_shards, two_epochs):
    epochs = two_epochs(sample_key_pipe(uneven_shards.urls, seed=3), 2, context="spawn", persistent_workers=True)
    assert_exactly_once_in_fresh_orders(epochs, uneven_shards.keys)


@pytest.mark.dataloader2
def test_reading_service_restarted_mid_epoch_delivers_everything_next_epoch(uneven_shards):
    from torchdata.dataloader2 import DataLoader2

    service = reading_service(2, multiprocessing_context="fork", timeout=60)
    with DataLoader2(sample_key_pipe(uneven_shards.urls), reading_service=service) as loader:
        first_half = iter(loader)
        [next(first_half) for _ in range(len(uneven_shards.keys) // 2)]
        assert sorted(loader) == sorted(uneven_shards.keys)


def test_more_readers_than_shards_still_delivers_everything(wds_shards):
    shards = wds_shards(samples_per_shard_list=[5], image_size=8)
    epochs = two_epochs_dataloader(sample_key_pipe(shards.urls, seed=1), 2, context="fork")
    for epoch in epochs:
        assert sorted(epoch) == sorted(shards.keys)


def test_pipe_seed_changes_the_order_for_one_loader_seed(uneven_shards):
    first = two_epochs_dataloader(sample_key_pipe(uneven_shards.urls, seed=1), 0)
    second = two_epochs_dataloader(sample_key_pipe(uneven_shards.urls, seed=2), 0)
    assert first != second


def test_shard_across_readers_warns_when_readers_outnumber_shards():
    share = IterableWrapper(["a.tar", "b.tar"]).shard_across_readers(rank=0, world_size=4)
    with pytest.warns(UserWarning, match=r"only 2 shards for 4 readers .*2 readers get no shard"):
        assert list(share) == ["a.tar"]


def test_preflight_warning_names_the_numbers():
    assert preflight_warning(8, 8) is None
    message = preflight_warning(3, 8)
    assert message is not None and "only 3 shards for 8 readers (ranks x workers)" in message


def test_shard_shuffler_gives_every_reader_the_same_permutation():
    orders = []
    for _ in range(3):
        shuffler = IterableWrapper([f"s{index}" for index in range(20)]).shuffle_shards(seed=4)
        orders.append(list(shuffler))
    assert orders[0] == orders[1] == orders[2] != sorted(orders[0])


def test_sample_shuffler_gives_each_reader_its_own_random_stream():
    patterns = []
    for instance_id in range(2):
        share = IterableWrapper(range(200)).shard_across_readers(rank=instance_id, world_size=2)
        shuffler = share.shuffle_samples(buffer_size=50, seed=0, rank=instance_id, world_size=2)
        patterns.append([value // 2 for value in shuffler])
    assert sorted(patterns[0]) == sorted(patterns[1]) == list(range(100))
    assert patterns[0] != patterns[1]


def test_sample_shuffler_without_loader_changes_order_each_epoch_and_repeats_per_seed():
    def epochs(seed: int) -> List[List[int]]:
        shuffler = IterableWrapper(range(50)).shuffle_samples(buffer_size=10, seed=seed)
        return [list(shuffler) for _ in range(2)]

    assert epochs(0) == epochs(0)
    assert epochs(0)[0] != epochs(0)[1]
    assert sorted(epochs(0)[1]) == list(range(50))


def test_sharding_pipes_survive_pickling_and_restart():
    pipe = IterableWrapper(range(30)).shuffle_shards(seed=1).shard_across_readers().shuffle_samples(buffer_size=4, seed=1)
    restored = pickle.loads(pickle.dumps(pipe))
    iterator = iter(restored)
    [next(iterator) for _ in range(10)]
    assert sorted(restored) == list(range(30))


def test_epoch_seed_is_stable_and_sensitive_to_every_part():
    assert epoch_seed("samples", 1, 2, (0, 4)) == epoch_seed("samples", 1, 2, (0, 4))
    assert len({epoch_seed("samples", 1, 2, (reader, 4)) for reader in range(4)}) == 4


def test_rank_equalizer_alone_passes_everything_through():
    equalizer = RankEqualizer(range(37), "drop", window=5)
    assert list(equalizer) == list(range(37))
    assert equalizer.samples_dropped == 0


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"num_workers": -1}, r"num_workers must be an int >= 0"),
        ({"equalize": "trim"}, r"equalize must be one of \('drop', 'pad'\) or None, got 'trim'"),
        ({"multiprocessing_context": "thread"}, r"multiprocessing_context must be one of"),
        ({"distributed": "yes"}, r"distributed must be None \(detect\), True or False"),
    ],
)
@pytest.mark.dataloader2
def test_reading_service_rejects_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        reading_service(**arguments)


@pytest.mark.dataloader2
def test_reading_service_requires_a_process_group_when_asked():
    from torchdata.dataloader2 import DataLoader2

    with pytest.raises(RuntimeError, match=r"distributed=True needs an initialised"):
        DataLoader2(IterableWrapper([1]), reading_service=reading_service(distributed=True)).__iter__()


def test_wds_pipe_delivers_decoded_samples_exactly_once(uneven_shards):
    from torchdata_s3ext.pipeline import wds_pipe

    pipe = wds_pipe(uneven_shards.urls[0].rsplit("/", 1)[0] + "/", shuffle_buffer=4, seed=0)
    loaders = [two_epochs_dataloader] + ([two_epochs_dataloader2] if has_torchdata_datapipes() else [])
    for two_epochs in loaders:
        epochs = [[sample["__key__"] for sample in epoch] for epoch in two_epochs(pipe, 2, context="fork")]
        assert_exactly_once_in_fresh_orders(epochs, uneven_shards.keys)


def test_wds_pipe_without_decode_yields_the_png_bytes(uneven_shards):
    from torchdata_s3ext.pipeline import wds_pipe

    samples = list(wds_pipe(uneven_shards.urls, decode=False, shuffle=False))
    assert [sample["__key__"] for sample in samples] == uneven_shards.keys
    assert all(type(sample["image"]) is bytes and sample["image"].startswith(b"\x89PNG") for sample in samples)


def test_epochs_package_names_its_public_pieces():
    assert set(_sharding.__all__) >= {"CheckpointMismatch", "RankEqualizer", "merge_states"}
