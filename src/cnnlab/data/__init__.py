"""Datasets: verified IDX files, located on disk or downloaded on request, batched in memory."""

from cnnlab.data.batches import Batches, epoch_order
from cnnlab.data.datasets import (
    DATASETS,
    FASHION_MNIST,
    MNIST,
    Dataset,
    ImageSet,
    get_dataset,
    load_dataset,
    locate,
)
from cnnlab.data.download import download
from cnnlab.data.idx import parse_idx, read_idx

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
