"""Your own pictures: ``--dataset folder:DIR``, a folder of class subfolders (the layout of
torchvision's ``ImageFolder`` and Keras' ``image_dataset_from_directory``).

``DIR/train/<class>/*`` and ``DIR/test/<class>/*``, or only ``DIR/<class>/*``, of which a
fixed share of each class (``TEST_FRACTION``, drawn with ``SPLIT_SEED``) is held out as the
test split. Any file PIL reads (PNG, JPEG, BMP, WebP, ...) of any size and mode is an
image; a file it cannot read is skipped, counted and named. The images are decoded once
into the in-memory uint8 store the IDX sets use ((N, H, W) grayscale, (N, 3, H, W) RGB)
and cached under the names, sizes and modification times of the files, so that a second
run starts at once.
"""

from __future__ import annotations

import hashlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data.datasets import PREFIX, ImageSet, get_dataset, is_folder, subset_test_size
from cnnlab.data.images import is_gray, open_image, pixels
from cnnlab.data.load import load_dataset
from cnnlab.errors import DataError
from cnnlab.fsutil import atomic_write_bytes, user_cache
from cnnlab.logs import shown

TEST_FRACTION = 0.2  # of each class, held out as the test split of a folder without train/test
SPLIT_SEED = 0
DEFAULT_SIZE = {1: (28, 28), 3: (32, 32)}  # Fashion-MNIST's, CIFAR's
CACHE_FORMAT = 1  # bumped when the cached arrays change meaning
SHOWN = 3  # skipped files named in the notice
MAX_STORE = 8 << 30  # bytes: the decoded images a folder may take in memory


def load_splits(
    dataset: str,
    data_dir: str | Path | None = None,
    channels: int = 0,
    size: tuple[int, int] | None = None,
    offline: bool | None = None,
) -> tuple[ImageSet, ImageSet, tuple[str, ...], dict[str, str]]:
    """Any dataset by name, a folder or an IDX set: (train, test, class names, what a
    run's model.json records of it beyond its name); ``offline``: see
    :func:`~cnnlab.data.load.load_dataset`."""
    if is_folder(dataset):
        folder = load_folder(dataset, channels, size)
        return folder.train, folder.test, folder.classes, {"split": folder.split}
    known = get_dataset(dataset)
    train, test = load_dataset(known, data_dir, offline=offline)
    return train, test, known.classes, {}


def splits_of_run(
    meta: dict[str, Any], data_dir: str | Path | None, offline: bool | None = None
) -> tuple[ImageSet, ImageSet, tuple[str, ...], dict[str, str]]:
    """The splits a run with the sidecar ``meta`` trained and tested on, converted as then
    (and the same subset of the test split, for a run trained with ``--subset``)."""
    if not is_folder(meta["dataset"]):
        train, test, classes, about = load_splits(meta["dataset"], data_dir, offline=offline)
    else:
        channels, height, width = meta["preprocessing"]["input_shape"]
        size = (int(height), int(width))
        train, test, classes, about = load_splits(meta["dataset"], None, int(channels), size)
    subset = meta.get("subset", 0)
    if isinstance(subset, int) and not isinstance(subset, bool) and subset > 0:
        train, test = train.subset(subset), test.subset(subset_test_size(subset))
    return train, test, classes, about


@dataclass(frozen=True)
class Folder:
    """A folder dataset, decoded: its splits, class names (the subfolders' names, sorted),
    the channels and size its images were converted to, and how its test split was made."""

    train: ImageSet
    test: ImageSet
    classes: tuple[str, ...]
    channels: int
    size: tuple[int, int]
    split: str
    skipped: tuple[str, ...]


def load_folder(dataset: str, channels: int = 0, size: tuple[int, int] | None = None) -> Folder:
    """The folder ``dataset`` (``folder:DIR``) with its images as ``channels`` (1 or 3;
    0: what most of its images are) at ``size`` (default 28x28 grayscale, 32x32 RGB)."""
    root = Path(dataset.removeprefix(PREFIX)).expanduser()
    if not root.is_dir():
        raise DataError(f"--dataset {dataset}: {root} is not a directory of class folders")
    layout, classes = _layout(root)
    files = {split: _files(directory, classes) for split, directory in layout.items()}
    stats = [(p, *_stat(p)) for listing in files.values() for _, paths in listing for p in paths]
    key = hashlib.sha256(
        repr(
            (
                CACHE_FORMAT,
                channels,
                size,
                str(root.resolve()),
                [(str(p.relative_to(root)), n, t) for p, n, t in stats],
            )
        ).encode()
    )
    cache = user_cache() / "folders" / f"{key.hexdigest()[:32]}.npz"
    try:
        folder = _read_cache(cache)
    except (OSError, ValueError, KeyError):
        folder = _decode(root, files, classes, channels, size)
        buffer = io.BytesIO()
        np.savez(buffer, **_arrays(folder))  # type: ignore[arg-type]
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache, buffer.getvalue())
    print(found(dataset, folder), file=sys.stderr)
    if folder.skipped:
        names = ", ".join(folder.skipped[:SHOWN]) + (", ..." if len(folder.skipped) > SHOWN else "")
        print(
            f"{dataset}: skipped {len(folder.skipped)} of {len(stats)} files that are not "
            f"readable images: {names}",
            file=sys.stderr,
        )
    return folder


def found(dataset: str, folder: Folder) -> str:
    """What loading a folder found, in one line (as Keras says "Found N files belonging to
    K classes"): images per split, the classes, channels and size.

    >>> images = ImageSet(np.zeros((4, 2, 2), np.uint8), np.zeros(4, np.int64))
    >>> found("folder:pics", Folder(images, images, ("a", "b"), 1, (28, 28), "x", ()))
    'folder:pics: found 4 training and 4 test images of 2 classes (a, b), as 1-channel 28x28'
    """
    names = ", ".join(folder.classes[:SHOWN]) + (
        f", ... ({len(folder.classes) - SHOWN} more)" if len(folder.classes) > SHOWN else ""
    )
    return (
        f"{dataset}: found {len(folder.train.labels)} training and {len(folder.test.labels)} "
        f"test images of {len(folder.classes)} classes ({names}), as {folder.channels}-channel "
        f"{folder.size[0]}x{folder.size[1]}"
    )


def _layout(root: Path) -> tuple[dict[str, Path], tuple[str, ...]]:
    """({split: its directory}, the class names): train and test, or all; the classes are
    the training folder's (a test folder may lack some)."""

    def classes_in(directory: Path) -> tuple[str, ...]:
        return tuple(
            sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
        )

    if (root / "train").is_dir():
        if not (root / "test").is_dir():
            raise DataError(
                f"{root} has train/ but no test/: give both, or put the class folders "
                "directly in it (a share is then held out for testing)"
            )
        train, test = classes_in(root / "train"), classes_in(root / "test")
        if unknown := sorted(set(test) - set(train)):
            raise DataError(f"{root / 'test'} has classes that train/ lacks: {', '.join(unknown)}")
        layout, classes = {"train": root / "train", "test": root / "test"}, train
    else:
        layout, classes = {"all": root}, classes_in(root)
    if len(classes) < 2:
        raise DataError(
            f"{root} holds {len(classes)} class folder(s); a classifier needs at "
            "least 2 (one subfolder of images per class)"
        )
    return layout, classes


def _files(directory: Path, classes: tuple[str, ...]) -> list[tuple[int, list[Path]]]:
    """(label, its files, sorted) for each class folder under ``directory``."""
    listing = []
    for label, name in enumerate(classes):
        folder = directory / name
        paths = (
            sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file())
            if folder.is_dir()
            else []
        )
        listing.append((label, paths))
    return listing


def _stat(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_size, info.st_mtime_ns


def _decode(
    root: Path,
    files: dict[str, list[tuple[int, list[Path]]]],
    classes: tuple[str, ...],
    channels: int,
    size: tuple[int, int] | None,
) -> Folder:
    """Convert every readable file (one at a time: only the small results are kept) and
    split them."""
    skipped: list[str] = []
    headers: dict[str, list[tuple[int, Path, bool]]] = {}  # (label, path, is grayscale)
    for split, listing in files.items():
        headers[split] = []
        for label, paths in listing:
            for path in paths:
                try:
                    with open_image(path) as image:  # reads the header only
                        headers[split].append((label, path, is_gray(image)))
                except DataError as e:
                    skipped.append(_skipped(root, path, e))
    found = [gray for listed in headers.values() for _, _, gray in listed]
    if not found:
        raise DataError(f"{root}: no readable image in its class folders")
    channels = channels or (1 if 2 * sum(found) >= len(found) else 3)
    size = size or DEFAULT_SIZE[channels]
    store = len(found) * channels * size[0] * size[1]
    if store > MAX_STORE:
        raise DataError(
            f"{root}: {len(found)} images of {channels}x{size[0]}x{size[1]} would take "
            f"{store / 1e9:.1f} GB in memory (at most {MAX_STORE / 1e9:.0f} GB here); choose a "
            "smaller --image-size"
        )
    converted: dict[str, list[tuple[int, np.ndarray]]] = {}
    for split, listed in headers.items():
        converted[split] = []
        for label, path, _ in listed:
            try:
                with open_image(path) as image:
                    array = pixels(image, channels, size)
            except (DataError, OSError, ValueError, SyntaxError) as e:
                skipped.append(_skipped(root, path, e))  # a header, then broken data
                continue
            array = np.rint(array * 255).astype(np.uint8)
            converted[split].append((label, array if channels == 3 else array[0]))
    in_training = {label for split in ("train", "all") for label, _ in converted.get(split, [])}
    if empty := [shown(classes[i]) for i in range(len(classes)) if i not in in_training]:
        raise DataError(
            f"{root}: class folder {empty[0]!r} holds no readable image"
            + (f" (nor do {len(empty) - 1} more)" if len(empty) > 1 else "")
            + "; put pictures in it, or remove it"
        )
    if "all" in converted:
        train, test = _hold_out(converted["all"])
        split_text = f"{TEST_FRACTION:g} of each class held out for testing (seed {SPLIT_SEED})"
    else:
        train, test, split_text = converted["train"], converted["test"], "train/ and test/"
    if not train or not test:
        raise DataError(
            f"{root}: the {'test' if train else 'training'} split holds no readable image"
        )
    return Folder(
        _image_set(train),
        _image_set(test),
        tuple(_text(name) for name in classes),
        channels,
        size,
        split_text,
        tuple(sorted(skipped)),
    )


def _skipped(root: Path, path: Path, error: Exception) -> str:
    """How a skipped file is named in the notice: its path in the folder, and why when the
    reason is its size (the others are files that are no images)."""
    name = shown(path.relative_to(root))
    return (
        f"{name} ({str(error).partition(': ')[2]})" if "CNNLAB_MAX_PIXELS" in str(error) else name
    )


def _text(name: str) -> str:
    """A folder's name as text that any font, JSON file and page can hold: bytes that are
    not UTF-8 (kept by Python as surrogates) become U+FFFD.

    >>> _text("caf\\udce9")
    'caf\ufffd'
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _image_set(examples: list[tuple[int, np.ndarray]]) -> ImageSet:
    images = np.stack([array for _, array in examples])
    return ImageSet(images, np.array([label for label, _ in examples], np.int64))


def _hold_out(
    examples: list[tuple[int, np.ndarray]],
) -> tuple[list[tuple[int, np.ndarray]], list[tuple[int, np.ndarray]]]:
    """(train, test): ``TEST_FRACTION`` of each class's images, drawn once with
    ``SPLIT_SEED``, for testing; at least one where a class has two or more."""
    rng = np.random.default_rng(SPLIT_SEED)
    train, test = [], []
    for label in sorted({label for label, _ in examples}):
        members = [item for item in examples if item[0] == label]
        held = round(TEST_FRACTION * len(members)) or (1 if len(members) > 1 else 0)
        order = rng.permutation(len(members))
        test += [members[i] for i in sorted(order[:held])]
        train += [members[i] for i in sorted(order[held:])]
    return train, test


def _arrays(folder: Folder) -> dict[str, np.ndarray]:
    return {
        "train_images": folder.train.images,
        "train_labels": folder.train.labels,
        "test_images": folder.test.images,
        "test_labels": folder.test.labels,
        "classes": np.array(folder.classes),
        "channels": np.array(folder.channels),
        "size": np.array(folder.size),
        "split": np.array(folder.split),
        "skipped": np.array(folder.skipped, dtype=str),
    }


def _read_cache(path: Path) -> Folder:
    with np.load(path, allow_pickle=False) as data:
        return Folder(
            ImageSet(data["train_images"], data["train_labels"]),
            ImageSet(data["test_images"], data["test_labels"]),
            tuple(str(c) for c in data["classes"]),
            int(data["channels"]),
            (int(data["size"][0]), int(data["size"][1])),
            str(data["split"]),
            tuple(str(s) for s in data["skipped"]),
        )


__all__ = ["Folder", "load_folder", "load_splits", "splits_of_run"]
