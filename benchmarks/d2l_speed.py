"""The book's own LeNet code through ``cnnlab.compat.d2l``, against the d2l package's loop
and against ``cnnlab train``, in one process on the same data and seed.

English edition (d2l-en v1: batch 128, lr 0.1):
(a) d2l:     a faithful re-implementation of the d2l package's ``Trainer.fit``: a
             torchvision-style dataset (PIL image -> Resize -> ToTensor per example), a
             ``DataLoader`` with 4 worker processes, the loss and accuracy copied to the host
             at every batch for the ProgressBoard, denormals not flushed.
(b) compat:  the chapter's cells, unchanged but for the import, on ``cnnlab.compat.d2l``.
(c) cnnlab:  ``cnnlab train`` with the same network and recipe.
Chinese edition (d2l-zh: ``train_ch6``, batch 256, lr 0.9):
(d) compat:  the chapter's ``train_ch6`` cell on ``cnnlab.compat.d2l``;
(e) cnnlab:  ``cnnlab train`` with the same recipe.

The variants run in turns, ``--repeats`` rounds of each; every rate is training examples
per second of training-batch time, and the ratios compare medians. Prints one JSON object.

    python benchmarks/d2l_speed.py --epochs 2 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from cnnlab import TrainConfig, load_dataset, train
from cnnlab.compat import d2l
from cnnlab.models import create_model  # the chapter's nn.Sequential LeNet

EN = {"batch_size": 128, "lr": 0.1}
ZH = {"batch_size": 256, "lr": 0.9}


class TorchvisionStyle(Dataset[tuple[torch.Tensor, int]]):
    """What ``torchvision.datasets.FashionMNIST`` with ``Compose([Resize, ToTensor])``
    does for each example: a PIL image, resized, converted to a float tensor."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, size: tuple[int, int]) -> None:
        self.images, self.labels, self.size = images, labels, size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[i], mode="L").resize(self.size, Image.BILINEAR)
        return torch.from_numpy(np.array(image)).float().div(255)[None], int(self.labels[i])


def d2l_package_fit(epochs: int, seed: int, data_dir: str | None) -> dict[str, Any]:
    """The d2l package's Trainer.fit / Classifier steps / ProgressBoard, as it runs them."""
    torch.set_flush_denormal(False)  # the package never flushes
    torch.manual_seed(seed)
    train_set, test_set = load_dataset("fashion-mnist", data_dir)
    loaders = [
        DataLoader(
            TorchvisionStyle(s.images, s.labels, (28, 28)),
            EN["batch_size"],
            shuffle=shuffle,
            num_workers=4,
        )
        for s, shuffle in ((train_set, True), (test_set, False))
    ]
    model = d2l.LeNet(lr=EN["lr"]).net
    model(next(iter(loaders[0]))[0])
    model.apply(d2l.init_cnn)
    optim = torch.optim.SGD(model.parameters(), lr=EN["lr"])
    board: dict[str, list[float]] = {}
    raw: dict[str, list[float]] = {}

    def plot(key: str, value: torch.Tensor, every_n: int) -> None:
        raw.setdefault(key, []).append(float(value.to("cpu").detach().numpy()))  # per batch
        if len(raw[key]) == every_n:
            board.setdefault(key, []).append(sum(raw[key]) / every_n)
            raw[key].clear()

    train_seconds, examples, val_acc = 0.0, 0, 0.0
    for _ in range(epochs):
        model.train()
        start = time.perf_counter()
        for x, y in loaders[0]:
            loss = F.cross_entropy(model(x), y)
            plot("train_loss", loss, len(loaders[0]) // 2)
            optim.zero_grad()
            with torch.no_grad():
                loss.backward()
                optim.step()
            examples += len(y)
        train_seconds += time.perf_counter() - start
        model.eval()
        with torch.no_grad():
            for x, y in loaders[1]:
                y_hat = model(x)
                plot("val_loss", F.cross_entropy(y_hat, y), len(loaders[1]))
                plot("val_acc", (y_hat.argmax(1) == y).float().mean(), len(loaders[1]))
        val_acc = board["val_acc"][-1]
    return {"examples_per_sec": examples / train_seconds, "val_acc": val_acc}


def compat_english(epochs: int, seed: int, data_dir: str | None) -> dict[str, Any]:
    """The English edition's LeNet cells."""
    torch.manual_seed(seed)
    trainer = d2l.Trainer(max_epochs=epochs, num_gpus=1)
    data = d2l.FashionMNIST(batch_size=EN["batch_size"], data_dir=data_dir)
    model = d2l.LeNet(lr=EN["lr"])
    model.apply_init([next(iter(data.get_dataloader(True)))[0]], d2l.init_cnn)
    trainer.fit(model, data)
    return {
        "examples_per_sec": trainer.train_examples / trainer.train_seconds,
        "val_acc": model.board.data["val_acc"][-1].y,
    }


def compat_chinese(epochs: int, seed: int, data_dir: str | None) -> dict[str, Any]:
    """The Chinese edition's LeNet cells (``train_ch6``)."""
    torch.manual_seed(seed)
    train_iter, test_iter = d2l.load_data_fashion_mnist(ZH["batch_size"], data_dir=data_dir)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        d2l.train_ch6(create_model("lenet"), train_iter, test_iter, epochs, ZH["lr"], d2l.try_gpu())
    lines = out.getvalue().splitlines()
    return {
        "examples_per_sec": float(lines[-1].split()[0]),
        "test_acc": float(lines[-2].split("test acc ")[1]),
    }


def cnnlab_train(recipe: dict[str, Any]) -> Callable[[int, int, str | None], dict[str, Any]]:
    def run(epochs: int, seed: int, data_dir: str | None) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            result = train(
                TrainConfig(
                    epochs=epochs,
                    seed=seed,
                    data_dir=data_dir,
                    quiet=True,
                    out_dir=str(Path(tmp) / "run"),
                    **recipe,
                )
            )
        return {"examples_per_sec": result.examples_per_sec, "test_acc": result.final["test_acc"]}

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs per variant and round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="where the Fashion-MNIST files are")
    args = parser.parse_args()
    logging.getLogger("cnnlab").setLevel(logging.WARNING)
    variants: dict[str, Callable[[int, int, str | None], dict[str, Any]]] = {
        "en_d2l_package_loop": d2l_package_fit,
        "en_compat": compat_english,
        "en_cnnlab_train": cnnlab_train(EN),
        "zh_compat": compat_chinese,
        "zh_cnnlab_train": cnnlab_train(ZH),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # where the book's figures (PNG files) go
        try:
            for _ in range(args.repeats):
                for name, run in variants.items():
                    with contextlib.redirect_stderr(io.StringIO()):
                        runs[name].append(run(args.epochs, args.seed, args.data_dir))
        finally:
            os.chdir(here)
    rate = {name: statistics.median(r["examples_per_sec"] for r in rs) for name, rs in runs.items()}
    print(
        json.dumps(
            {
                "epochs": args.epochs,
                "repeats": args.repeats,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "examples_per_sec_median": {k: round(v) for k, v in rate.items()},
                "runs": runs,
                "en_compat_over_cnnlab_train": round(
                    rate["en_compat"] / rate["en_cnnlab_train"], 3
                ),
                "en_compat_over_d2l_package_loop": round(
                    rate["en_compat"] / rate["en_d2l_package_loop"], 3
                ),
                "zh_compat_over_cnnlab_train": round(
                    rate["zh_compat"] / rate["zh_cnnlab_train"], 3
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
