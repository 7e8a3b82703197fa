"""An example ``--train-step`` for the bench: decode the batch's PNG images and run one small convolution
forward and backward, a stand-in for a real step's compute. Pass your own as ``module:function``; it gets
the collated batch (a dict of lists of bytes for every method but ``webdataset-awscli``'s, which is alike)."""
import io
from typing import Any, Dict

__all__ = ["decode_and_convolve"]


def decode_and_convolve(batch: Dict[str, Any]) -> float:
    import numpy as np
    import torch
    from PIL import Image

    images = torch.stack([
        torch.from_numpy(np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))).permute(2, 0, 1)
        for data in batch["image"]
    ]).float().div_(255)
    weight = torch.ones(8, 3, 3, 3, requires_grad=True)
    loss = torch.nn.functional.conv2d(images, weight, padding=1).mean()
    loss.backward()
    return float(loss)
