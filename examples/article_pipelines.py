"""The article's pipelines ("Training in PyTorch from Amazon S3"), each written with ``open_s3``.

Every ``get_dataset_*`` below streams the same WebDataset shards through a different client; only the
``backend`` argument changes. Run against the embedded server with a few seed-style shards:

    python examples/article_pipelines.py            # starts a local S3 server itself (needs moto: [test])
    python examples/article_pipelines.py s3://my-bucket/train/shard-{000000..000009}.tar
    python examples/article_pipelines.py --backends boto3 fsspec --num-workers 4 s3://my-bucket/train/
    python examples/article_pipelines.py --help

A backend whose optional library is not installed (the AWS CLI, s3torchconnector, ...) is skipped with one line
naming the package.

Where the article used ``groupby`` + ``map`` to pair ``KEY.image`` with ``KEY.label``, ``group_wds_samples``
does it with WebDataset's own key rules, streaming, and ``decode_png_pair`` turns the PNGs into tensors.
"""
import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

# First, so that torchdata's deprecation banner is silenced before torchdata is imported (it prints it once).
import torchdata_s3ext  # noqa: I001  (registers open_s3, group_wds_samples, decode_png_pair)

import torch
from torch.utils.data.datapipes.iter import IterableWrapper


def _samples(urls: List[str], backend: str, **open_kwargs):
    return (
        IterableWrapper(urls)
        .shuffle()
        .sharding_filter()
        .open_s3(backend=backend, **open_kwargs)
        .load_from_tar()
        .group_wds_samples()
        .shuffle(buffer_size=10)
        .decode_png_pair()
    )


def get_dataset_awscli(urls):
    """The article's ``pipe:aws s3 cp URL -``."""
    return _samples(urls, "awscli")


def get_dataset_boto3(urls):
    """The article's boto3 ``download_fileobj``, but streamed rather than downloaded whole."""
    return _samples(urls, "boto3")


def get_dataset_s3fs(urls):
    """The article's S3Fs ``fs.open`` (no need for the ``spawn`` start method: clients are per process)."""
    return _samples(urls, "fsspec")


def get_dataset_iopath(urls):
    """The article's ``IoPathFileOpener``."""
    return _samples(urls, "iopath")


def get_dataset_s3fileloader(urls):
    """The article's ``S3FileLoader`` (torchdata's native client; whole object in memory)."""
    return _samples(urls, "s3fileloader")


def get_dataset_s3torchconnector(urls):
    """The successor AWS recommends for the S3 plug-in and S3FileLoader."""
    return _samples(urls, "s3torchconnector")


def get_dataset_mounted(paths):
    """The article's SageMaker Fast File Mode: the bucket mounted at a local path (``SM_CHANNEL_TRAINING``)."""
    return _samples(paths, "local")


DATASETS: Dict[str, Callable] = {
    "awscli": get_dataset_awscli,
    "boto3": get_dataset_boto3,
    "fsspec": get_dataset_s3fs,
    "iopath": get_dataset_iopath,
    "s3fileloader": get_dataset_s3fileloader,
    "s3torchconnector": get_dataset_s3torchconnector,
}

#: what each backend with an optional library needs, as the skip line names it
OPTIONAL_PACKAGES = {
    "awscli": "awscli (the `aws` command: pip install awscli)",
    "fsspec": "s3fs (pip install s3fs)",
    "iopath": "iopath (pip install iopath)",
    "s3fileloader": "torchdata built with its native S3 extension (torchdata._torchdata.S3Handler)",
    "s3torchconnector": "s3torchconnector (pip install 'torchdata-s3ext[s3torchconnector]')",
}
#: the module whose presence means the backend's library is installed
_LIBRARY_MODULES = {"fsspec": "s3fs", "iopath": "iopath", "s3torchconnector": "s3torchconnector"}


def _installed(module_name: str) -> bool:
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        return False


def missing_package(backend: str) -> Optional[str]:
    """The package ``backend`` needs and this environment lacks, or ``None`` when the backend can run."""
    if backend == "awscli":
        # The backend looks for ``aws`` on PATH, then beside this Python (a virtualenv's bin).
        search_path = os.pathsep.join([os.environ.get("PATH", ""), os.path.dirname(sys.executable)])
        found = shutil.which("aws", path=search_path) is not None
    elif backend == "s3fileloader":
        found = _installed("torchdata._torchdata") and hasattr(importlib.import_module("torchdata._torchdata"), "S3Handler")
    elif backend in _LIBRARY_MODULES:
        found = _installed(_LIBRARY_MODULES[backend])
    else:
        found = True
    return None if found else OPTIONAL_PACKAGES[backend]


def run(urls: List[str], backends: Sequence[str], num_workers: int = 2, batch_size: int = 4) -> None:
    """Reads every shard once with each backend and prints its throughput, or why it was skipped."""
    for name in backends:
        missing = missing_package(name)
        if missing is not None:
            print(f"{name:>18}: skipped, needs {missing}")
            continue
        loader = torch.utils.data.DataLoader(DATASETS[name](urls), batch_size=batch_size, num_workers=num_workers)
        started, count = time.perf_counter(), 0
        for batch in loader:
            count += len(batch["__key__"])
        print(f"{name:>18}: {count} samples, {count / (time.perf_counter() - started):7.1f} samples/s")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="article_pipelines.py",
        description="Read WebDataset shards with each of the article's S3 clients (open_s3 backends) and print "
        "their throughput. Without SHARDS, starts a local S3 server (moto) with a few seed-style shards.",
    )
    parser.add_argument(
        "shards", nargs="?", default=None,
        help="a shard spec: brace pattern (s3://bkt/train/shard-{000000..000009}.tar), S3 prefix or local folder",
    )
    parser.add_argument(
        "--backends", nargs="+", choices=list(DATASETS), default=list(DATASETS), metavar="BACKEND",
        help=f"the backends to run, in order (default: all of {', '.join(DATASETS)})",
    )
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes (default: 2)")
    parser.add_argument("--batch-size", type=int, default=4, help="samples per batch (default: 4)")
    return parser.parse_args(argv)


def _run_on_local_server(args: argparse.Namespace) -> None:
    import boto3

    from torchdata_s3ext.testing import LocalS3Server, seed_samples, tar_bytes

    with LocalS3Server() as server, tempfile.TemporaryDirectory():
        os.environ.update(server.env())
        client = boto3.client("s3")
        client.create_bucket(Bucket="demo-bucket")
        shard_urls = []
        for index in range(4):
            shard = tar_bytes(seed_samples(8, image_size=128, first_index=8 * index))
            client.put_object(Bucket="demo-bucket", Key=f"train/shard-{index:06d}.tar", Body=shard)
            shard_urls.append(f"s3://demo-bucket/train/shard-{index:06d}.tar")
        run(shard_urls, args.backends, args.num_workers, args.batch_size)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.shards is None:
        _run_on_local_server(args)
    else:
        run(list(torchdata_s3ext.list_shards(args.shards)), args.backends, args.num_workers, args.batch_size)


if __name__ == "__main__":
    main()
