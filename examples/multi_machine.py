"""Multi-machine training from S3 WebDataset shards: every sample exactly once per epoch, across all ranks
and DataLoader workers, in a fresh order each epoch.

Launch one process per GPU (or per machine on CPU) with torchrun, e.g. on each of 2 machines:

    torchrun --nnodes=2 --nproc_per_node=1 --rdzv_backend=c10d --rdzv_endpoint=HOST0:29400 \
        examples/multi_machine.py --shards "s3://bkt/train/shard-{000000..000099}.tar" --workers 4

or on one machine, two ranks: ``torchrun --standalone --nproc_per_node=2 examples/multi_machine.py --shards ...``.
It reads with a plain ``torch.utils.data.DataLoader``; ``--loader dataloader2`` uses torchdata 0.9's ``DataLoader2``
with our reading service instead; ``--equalize`` gives every rank the same number of samples (``drop`` or ``pad``)
instead of wrapping the loop in DDP's ``Join``.
"""
import argparse
import contextlib
import logging
import os
from typing import Any, Dict, Iterable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.algorithms.join import Join
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from torchdata_s3ext import RankEqualizer, reading_service, wds_pipe

NUM_CLASSES = 256


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", required=True, help="brace pattern, s3:// prefix or local folder")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers per rank")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--shuffle-buffer", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loader", choices=["dataloader", "dataloader2"], default="dataloader",
                        help="dataloader2 needs torchdata 0.9")
    parser.add_argument("--equalize", choices=["drop", "pad"], default=None)
    parser.add_argument("--backend", default="auto", help="open_s3 backend (\"local\" for a local folder)")
    return parser.parse_args()


def make_batches(args: argparse.Namespace) -> Iterable[Dict[str, Any]]:
    """Batches of decoded samples for this rank, epoch after epoch (each ``iter()`` is a new epoch)."""
    pipe = wds_pipe(args.shards, backend=args.backend, shuffle_buffer=args.shuffle_buffer, seed=args.seed)
    if args.loader == "dataloader2":
        from torchdata.dataloader2 import DataLoader2

        service = reading_service(args.workers, equalize=args.equalize, persistent_workers=args.workers > 0)
        return DataLoader2(pipe.batch(args.batch_size).collate(), reading_service=service)
    loader = DataLoader(pipe, batch_size=args.batch_size, num_workers=args.workers, persistent_workers=args.workers > 0)
    return RankEqualizer(loader, args.equalize) if args.equalize else loader


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s rank %(process)d %(message)s")
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")

    # A per-pixel classifier: enough to show the loop; put your segmentation model here.
    model = DistributedDataParallel(torch.nn.Conv2d(3, NUM_CLASSES, kernel_size=1).to(device))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    batches = make_batches(args)

    for epoch in range(args.epochs):
        samples_seen = 0
        # Without equalize, ranks may get different numbers of batches; Join lets the ranks that finish first
        # shadow DDP's all-reduces for the others instead of hanging.
        with contextlib.nullcontext() if args.equalize else Join([model]):
            for batch in batches:
                images = batch["image"].to(device).float().div_(255)
                labels = batch["label"].to(device).long()
                loss = F.cross_entropy(model(images), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                samples_seen += len(batch["__key__"])
        total = torch.tensor(samples_seen)
        dist.all_reduce(total)
        logging.info("epoch %d: rank %d/%d saw %d samples, all ranks %d", epoch, rank, world_size, samples_seen, int(total))

    if hasattr(batches, "shutdown"):  # DataLoader2
        batches.shutdown()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
