"""The datasets cnnlab knows: files, checksums, mirrors; where to find them; how to load them.

A dataset found nowhere is downloaded into the cache on first use (as the book's library,
torchvision and Keras do), verified before it is kept; ``CNNLAB_OFFLINE=1`` forbids that
and ``CNNLAB_MIRRORS`` (comma-separated base URLs) replaces the built-in mirrors.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab import environ
from cnnlab.data.idx import parse_idx, read_bytes
from cnnlab.errors import ConfigError, DataError
from cnnlab.fsutil import user_cache

SPLITS = ("train", "test")
VALIDATION_SEED = 0  # fixes which training examples a validation split holds out
SUBSET_SEED = 1  # fixes which examples --subset takes


@dataclass(frozen=True)
class Resource:
    """One IDX file of a dataset."""

    filename: str  # uncompressed name; the ``.gz`` form is accepted too
    sha256: str | None  # SHA-256 of the decompressed payload
    gz_sha256: str | None = None  # SHA-256 of the official .gz, for sets without a payload sum
    size: int | None = None  # bytes of the decompressed payload: caps a download of the file


@dataclass(frozen=True)
class Dataset:
    """A (train, test) pair of image/label IDX files with their provenance."""

    name: str
    classes: tuple[str, ...]
    train_images: Resource
    train_labels: Resource
    test_images: Resource
    test_labels: Resource
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()  # where an OS package installs the files
    torchvision_dir: str | None = None  # its folder in torchvision's layout (ROOT/<it>/raw)

    @property
    def resources(self) -> tuple[Resource, ...]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)

    @property
    def download_command(self) -> str:
        return f"cnnlab data download --dataset {self.name}"

    @property
    def download_call(self) -> str:
        return f'cnnlab.data.download("{self.name}")'


FASHION_MNIST = Dataset(
    name="fashion-mnist",
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    train_images=Resource(
        "train-images-idx3-ubyte",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        size=47040016,
    ),
    train_labels=Resource(
        "train-labels-idx1-ubyte",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        size=60008,
    ),
    test_images=Resource(
        "t10k-images-idx3-ubyte",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        size=7840016,
    ),
    test_labels=Resource(
        "t10k-labels-idx1-ubyte",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        size=10008,
    ),
    mirrors=(  # https first; the S3 website serves plain http only
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    torchvision_dir="FashionMNIST",
)

# The MNIST digits are known by the SHA-256 of their official .gz archives (those
# archives are what every mirror serves); no payload checksum is published.
MNIST = Dataset(
    name="mnist",
    classes=tuple(str(d) for d in range(10)),
    train_images=Resource(
        "train-images-idx3-ubyte",
        None,
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        size=47040016,
    ),
    train_labels=Resource(
        "train-labels-idx1-ubyte",
        None,
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        size=60008,
    ),
    test_images=Resource(
        "t10k-images-idx3-ubyte",
        None,
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        size=7840016,
    ),
    test_labels=Resource(
        "t10k-labels-idx1-ubyte",
        None,
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        size=10008,
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    torchvision_dir="MNIST",
)

# Any four IDX files with the standard names, 10 classes: structure-checked, not checksummed.
# For your own data (and for tests on synthetic files); it is never downloaded.
IDX = Dataset(
    name="idx",
    classes=tuple(str(d) for d in range(10)),
    train_images=Resource("train-images-idx3-ubyte", None),
    train_labels=Resource("train-labels-idx1-ubyte", None),
    test_images=Resource("t10k-images-idx3-ubyte", None),
    test_labels=Resource("t10k-labels-idx1-ubyte", None),
    mirrors=(),
)

DATASETS: dict[str, Dataset] = {d.name: d for d in (FASHION_MNIST, MNIST, IDX)}


PREFIX = "folder:"  # --dataset folder:DIR, your own images (cnnlab.data.folder)


def is_folder(dataset: str) -> bool:
    return dataset.startswith(PREFIX)


def parse_size(text: str) -> tuple[int, int] | None:
    """``HxW`` (or ``N`` for a square) as (H, W); None for "" (the default).

    >>> parse_size("32x24"), parse_size("64"), parse_size("")
    ((32, 24), (64, 64), None)
    """
    if not text:
        return None
    parts = text.lower().split("x")
    try:
        sides = tuple(int(p) for p in parts)
    except ValueError:
        sides = ()
    if len(sides) == 1:
        sides = sides * 2
    if len(sides) != 2 or not all(1 <= s <= 1024 for s in sides):
        raise ConfigError(f"image size must be HxW (or N) with sides from 1 to 1024, got {text!r}")
    return sides[0], sides[1]


def get_dataset(name: str) -> Dataset:
    """Return the dataset called ``name``."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}") from None


def cache_dir(dataset: Dataset) -> Path:
    """The per-user cache directory: ``$XDG_CACHE_HOME/cnnlab/<name>`` or ``~/.cache/...``."""
    return user_cache() / dataset.name


def mirrors_of(dataset: Dataset) -> tuple[str, ...]:
    """Where ``dataset`` is downloaded from: the base URLs in ``CNNLAB_MIRRORS`` (comma-
    separated) if it is set, else the dataset's own mirrors; none for a set that is never
    downloaded (``idx``)."""
    chosen = tuple(m.strip() for m in environ.mirrors().split(",") if m.strip())
    return (chosen or dataset.mirrors) if dataset.mirrors else ()


def candidate_dirs(
    dataset: Dataset, data_dir: str | Path | None = None, root: str | Path | None = None
) -> list[tuple[str, Path]]:
    """The places searched for ``dataset``, in order, each with where it came from.
    ``root`` is the book's data folder (``../data``), read in torchvision's layout."""
    places: list[tuple[str, Path]] = []
    if data_dir is not None:
        places.append(("--data-dir", Path(data_dir)))
    if environ.data_dir():
        places.append(("CNNLAB_DATA", Path(environ.data_dir())))
    if root is not None and dataset.torchvision_dir is not None:
        places.append(("root", Path(root) / dataset.torchvision_dir / "raw"))
    places.append(("cache", cache_dir(dataset)))
    places.extend(("system", Path(d)) for d in dataset.system_dirs)
    return places


def find_file(directory: Path, resource: Resource) -> Path | None:
    """The raw or .gz copy of ``resource`` in ``directory``, raw first, if there is one."""
    for name in (resource.filename, resource.filename + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def missing_files(directory: Path, dataset: Dataset) -> list[str]:
    return [r.filename for r in dataset.resources if find_file(directory, r) is None]


def checksum_problem(path: Path, payload: bytes, resource: Resource) -> str | None:
    """What is wrong with ``payload`` (the decompressed bytes of ``path``) against
    ``resource``'s checksum, or None when it matches (or there is no checksum to check)."""
    if resource.sha256 is not None:
        digest, expected, what = hashlib.sha256(payload).hexdigest(), resource.sha256, "contents"
    elif resource.gz_sha256 is not None and path.suffix == ".gz":
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        expected, what = resource.gz_sha256, "archive"
    else:
        return None  # raw copy of a set published only with archive checksums
    if digest == expected:
        return None
    return f"checksum mismatch: the {what} has SHA-256 {digest}, expected {expected}"


def verify_payload(path: Path, payload: bytes, resource: Resource) -> None:
    """Raise DataError if ``payload`` (the decompressed bytes of ``path``) does not match
    ``resource``'s checksum."""
    problem = checksum_problem(path, payload, resource)
    if problem is not None:
        raise DataError(
            f"{path}: {problem}. The file is corrupt or not the official one; delete it and "
            "cnnlab will download it again."
        )


def read_verified(directory: Path, resource: Resource) -> np.ndarray:
    """Read one resource from ``directory``, verifying its checksum, and parse it."""
    path = find_file(directory, resource)
    if path is None:
        raise DataError(f"{directory}: missing {resource.filename} (raw or .gz)")
    payload = read_bytes(path)
    verify_payload(path, payload, resource)
    return parse_idx(payload, str(path))


@dataclass(frozen=True)
class ImageSet:
    """Images (N, H, W) uint8 and labels (N,) uint8 of one split."""

    images: np.ndarray
    labels: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image (grayscale sets: one channel)."""
        shape = self.images.shape
        return (1, shape[1], shape[2]) if len(shape) == 3 else (shape[1], shape[2], shape[3])

    def subset(self, size: int) -> ImageSet:
        """``size`` of the examples (all of them if there are no more), the same ones in
        every run (drawn once with :data:`SUBSET_SEED`), in file order.

        >>> s = ImageSet(np.zeros((10, 2, 2), np.uint8), np.arange(10, dtype=np.uint8))
        >>> s.subset(3).labels.tolist()
        [4, 7, 8]
        """
        if not 0 < size < len(self.labels):
            return self
        chosen = np.sort(np.random.default_rng(SUBSET_SEED).permutation(len(self.labels))[:size])
        return ImageSet(self.images[chosen], self.labels[chosen])

    def split_validation(self, size: int) -> tuple[ImageSet, ImageSet]:
        """(rest, held out): ``size`` examples held out for validation, the same ones in
        every run (a fixed permutation, whatever the run's seed), both in file order.

        >>> s = ImageSet(np.zeros((10, 2, 2), np.uint8), np.arange(10, dtype=np.uint8))
        >>> [len(part.labels) for part in s.split_validation(3)]
        [7, 3]
        """
        n = len(self.labels)
        if not 0 < size < n:
            raise ConfigError(
                f"a validation split needs 0 < size < {n} (the training set's size), got {size}"
            )
        order = np.random.default_rng(VALIDATION_SEED).permutation(n)
        rest, held = np.sort(order[size:]), np.sort(order[:size])
        return (
            ImageSet(self.images[rest], self.labels[rest]),
            ImageSet(self.images[held], self.labels[held]),
        )


def subset_test_size(subset: int) -> int:
    """How many test examples a run with ``--subset N`` tests on: a fifth as many, at
    least one (0: all).

    >>> subset_test_size(1000), subset_test_size(3), subset_test_size(0)
    (200, 1, 0)
    """
    return max(1, subset // 5) if subset else 0


def fingerprint(train: ImageSet, test: ImageSet, classes: tuple[str, ...]) -> dict[str, Any]:
    """What a run trains on, in a form cheap to keep and compare: the splits' sizes, the
    classes, and a SHA-256 of every pixel and label (about 0.1 s for Fashion-MNIST)."""
    digest = hashlib.sha256(json.dumps(list(classes)).encode())
    for array in (train.images, train.labels, test.images, test.labels):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).data)
    return {
        "train": len(train.labels),
        "test": len(test.labels),
        "classes": list(classes),
        "sha256": digest.hexdigest(),
    }


def data_change(recorded: Any, now: dict[str, Any]) -> str | None:
    """How the data ``now`` differs from the fingerprint a run ``recorded``, in words; None
    when it is the same (or nothing usable was recorded: a run from before it was)."""
    if not isinstance(recorded, dict) or recorded.get("sha256") == now["sha256"]:
        return None
    changes = [
        f"{key} {recorded.get(key)!r:.60} -> {now[key]!r:.60}"
        for key in ("train", "test", "classes")
        if recorded.get(key) != now[key]
    ]
    return "; ".join(changes) or "the same sizes and classes, other pixels or labels"
