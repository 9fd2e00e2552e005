"""A dataset's files found on this machine, or downloaded on first use, then read:
:func:`load_dataset`, the data layer's entry point."""

from __future__ import annotations

import sys
from pathlib import Path

from cnnlab import environ
from cnnlab.data.datasets import (
    SPLITS,
    Dataset,
    ImageSet,
    cache_dir,
    candidate_dirs,
    get_dataset,
    mirrors_of,
    missing_files,
    read_verified,
)
from cnnlab.data.download import download
from cnnlab.data.idx import check_images_labels
from cnnlab.errors import DataError


def locate(
    dataset: Dataset,
    data_dir: str | Path | None = None,
    root: str | Path | None = None,
    offline: bool = False,
) -> Path:
    """The first directory holding all of ``dataset``'s files; if there is none, the
    cache directory after downloading them there (unless ``offline``).

    An explicit ``data_dir`` (or ``CNNLAB_DATA``) must hold them: a directory the
    user named is never skipped silently.
    """
    for origin, directory in candidate_dirs(dataset, data_dir, root):
        missing = missing_files(directory, dataset)
        if not missing:
            return directory
        if origin in ("--data-dir", "CNNLAB_DATA"):
            fetched = f", or drop {origin} and cnnlab will download them"
            fetched = fetched if mirrors_of(dataset) else ""
            raise DataError(
                f"{dataset.name} files not found in {directory} (given by {origin}): "
                f"missing {', '.join(missing)} (raw or .gz). Put the four IDX files "
                f"there{fetched}."
            )
    searched = ", ".join(str(d) for _, d in candidate_dirs(dataset, data_dir, root))
    if not mirrors_of(dataset):
        raise DataError(
            f"{dataset.name} files not found (searched {searched}): it is never downloaded; "
            "put its four IDX files in a directory and pass --data-dir DIR (data_dir= in Python)"
        )
    if not offline:
        print(
            f"{dataset.name} is not on this machine (searched {searched}): downloading it "
            f"into {cache_dir(dataset)} (--offline or CNNLAB_OFFLINE=1 forbids this)",
            file=sys.stderr,
        )
        return download(dataset)
    hint = (
        ", or install Debian's package: `apt-get install dataset-fashion-mnist`"
        if dataset.system_dirs
        else ""
    )
    why = "; offline (--offline or CNNLAB_OFFLINE=1), so nothing was downloaded" if offline else ""
    raise DataError(
        f"{dataset.name} is not on this machine (searched {searched}){why}. Download it "
        f"with `{dataset.download_command}` or, in Python, `{dataset.download_call}`{hint}; "
        "or point cnnlab at your copy with --data-dir DIR (data_dir= in Python) or "
        "CNNLAB_DATA=DIR."
    )


def load_dataset(
    dataset: Dataset | str,
    data_dir: str | Path | None = None,
    root: str | Path | None = None,
    offline: bool | None = None,
) -> tuple[ImageSet, ImageSet]:
    """Locate (downloading on first use, unless ``offline``; by default, unless
    ``CNNLAB_OFFLINE`` is set), verify and decode ``dataset``; return its (train, test)
    splits. ``root``: see :func:`~cnnlab.data.datasets.candidate_dirs`."""
    if isinstance(dataset, str):
        dataset = get_dataset(dataset)
    offline = environ.offline() if offline is None else offline
    directory = locate(dataset, data_dir, root, offline)
    splits = []
    for split, (images_res, labels_res) in zip(
        SPLITS,
        ((dataset.train_images, dataset.train_labels), (dataset.test_images, dataset.test_labels)),
        strict=True,
    ):
        images = read_verified(directory, images_res)
        labels = read_verified(directory, labels_res)
        name = f"{directory} ({dataset.name} {split})"
        check_images_labels(images, labels, len(dataset.classes), name)
        if len(labels) == 0:
            raise DataError(f"{name}: the split holds no examples")
        splits.append(ImageSet(images, labels))
    return splits[0], splits[1]
