"""Datasets: verified IDX files, located on disk or downloaded on request, batched in memory.

``Batches`` (which needs torch) loads on first use, so the IDX reader and the dataset
table alone (``cnnlab.data.idx``, ``cnnlab data verify``) do not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.data.datasets import DATASETS, FASHION_MNIST, MNIST, Dataset, ImageSet, get_dataset
from cnnlab.data.download import download
from cnnlab.data.idx import parse_idx, read_idx
from cnnlab.data.load import load_dataset, locate
from cnnlab.lazy import lazy_names

if TYPE_CHECKING:
    from cnnlab.data.batches import Batches, epoch_order

__getattr__ = lazy_names("cnnlab.data", {"Batches": "batches", "epoch_order": "batches"})

__all__ = [
    "DATASETS",
    "FASHION_MNIST",
    "MNIST",
    "Batches",
    "Dataset",
    "ImageSet",
    "download",
    "epoch_order",
    "get_dataset",
    "load_dataset",
    "locate",
    "parse_idx",
    "read_idx",
]
