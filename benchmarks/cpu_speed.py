"""Three ways to run the book's recipe on a CPU, in one process on the same data and seed.

(a) book:  a faithful re-implementation of d2l's train_ch6 loop: a DataLoader with 4
           worker processes, a host sync per batch for the metrics, denormals not flushed.
(b) plain: a careful plain PyTorch loop: data in memory, denormals flushed, channels-last,
           metrics read once per epoch.
(c) cnnlab: cnnlab's default path (cnnlab.train): on a CPU, the conv -> activation -> pool
           blocks fused (cnnlab.accel.cpu); ``--only cnnlab-eager`` adds ``--no-fast``.
``--only plain-compile`` is (b) with the model under ``torch.compile`` (Inductor's C++
kernels on a CPU; its compile time counts in the wall time, not in examples/sec): the peer
a PyTorch user would reach for first. ``--only jax`` is the same recipe in JAX (the same
initial weights, batches and order), the whole step under ``jax.jit`` (XLA's CPU
kernels); its two compilations (a full batch and the epoch's last, shorter one) are timed
apart. It needs JAX: ``pip install 'cnnlab[benchmarks]'``.

Then one training step of the plain loop and of the fused path under torch.profiler: the
milliseconds per step of each op (self time), cnnlab's kernels under their autograd
functions' names: ``BlockFunction`` (a fused block's forward), ``BlockFunctionBackward``,
``LinearFunction`` and ``LinearFunctionBackward`` (the matrix products).

Prints one JSON object. ``--quick`` runs 1 epoch per variant. ``--repeats N`` runs the
variants N times in turns (book, plain, cnnlab, book, ...); each variant's examples/sec and
wall time are then the medians of its runs, and every run is listed under ``runs``.

``--isa avx2|avx512|portable|native`` builds cnnlab's kernels for that instruction set and
holds PyTorch's own kernels to the same level (benchmarks/isa.py), so one AVX-512 machine
measures both x86 targets, each against its own baseline.

    python benchmarks/cpu_speed.py --epochs 10
    python benchmarks/cpu_speed.py --epochs 10 --isa avx2
    python benchmarks/cpu_speed.py --epochs 10 --repeats 3 --only plain --only cnnlab
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from isa import TORCH_LEVELS, use_isa
from torch.utils.data import DataLoader, TensorDataset

from cnnlab import TrainConfig, load_dataset, train
from cnnlab.accel.cpu import fuse_layers
from cnnlab.data import epoch_order
from cnnlab.models import create_model, init_weights, pool_before_activation
from cnnlab.rundir import read_config

BATCH, LR = 256, 0.9


def fresh_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_model("lenet")
    init_weights(model, "xavier")
    return model


def test_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.inference_mode():
        correct = sum(
            (model(xb).argmax(1) == yb).sum()
            for xb, yb in zip(x.split(2000), y.split(2000), strict=True)
        )
        return float(correct) / len(y)


def run_book(
    data: dict[str, torch.Tensor], epochs: int, seed: int, device: str = "cpu"
) -> dict[str, Any]:
    """d2l's train_ch6: DataLoader(4 workers), float() of every batch's metrics on the host."""
    torch.set_flush_denormal(False)
    model = fresh_model(seed).to(device)
    loader = DataLoader(
        TensorDataset(data["x_train"], data["y_train"]),
        BATCH,
        shuffle=True,
        num_workers=4,
        generator=torch.Generator().manual_seed(seed),
    )
    test_loader = DataLoader(TensorDataset(data["x_test"], data["y_test"]), BATCH, num_workers=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    train_seconds, start = 0.0, time.perf_counter()
    for _ in range(epochs):
        model.train()
        metric = [0.0, 0.0, 0]
        for x, y in loader:
            t = time.perf_counter()
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            y_hat = model(x)
            loss = F.cross_entropy(y_hat, y)
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # the book's Accumulator: a host sync per batch
                metric[0] += float(loss) * len(y)
                metric[1] += float((y_hat.argmax(1) == y).sum())
                metric[2] += len(y)
            train_seconds += time.perf_counter() - t
        model.eval()
        correct = 0.0
        with torch.no_grad():
            for x, y in test_loader:
                x, y = x.to(device), y.to(device)
                correct += float((model(x).argmax(1) == y).sum())
        acc = correct / len(data["y_test"])
    wall = time.perf_counter() - start
    return summary(len(data["y_train"]) * epochs, train_seconds, wall, acc)


def run_plain(
    data: dict[str, torch.Tensor],
    epochs: int,
    seed: int,
    device: str = "cpu",
    compile: bool = False,
) -> dict[str, Any]:
    """Batches from memory on the device, no per-batch host sync; on a CPU denormals
    flushed and channels-last. Each epoch visits the examples in cnnlab's order for the
    seed, so at the same seed both train on the same batches from the same weights.
    ``compile``: the model under torch.compile; the first epoch's first step (the
    compilation) is left out of the training time."""
    torch.set_flush_denormal(True)
    layout = torch.channels_last if device == "cpu" else torch.contiguous_format
    model = fresh_model(seed).to(device, memory_format=layout)
    net = torch.compile(model) if compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    x_all, y_all = data["x_train"].to(device), data["y_train"].to(device)
    train_seconds, start = 0.0, time.perf_counter()
    for epoch in range(epochs):
        model.train()
        t = time.perf_counter()
        order = epoch_order(len(y_all), seed, epoch, device)
        loss_sum = torch.zeros((), device=device)
        for i in range(0, len(order), BATCH):
            index = order[i : i + BATCH]
            x = x_all[index].contiguous(memory_format=layout)
            loss = F.cross_entropy(net(x), y_all[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            if compile and epoch == 0 and i == 0:
                t = time.perf_counter()  # compiled: the rest is training
        loss_sum.item()
        train_seconds += time.perf_counter() - t
        acc = test_accuracy(model, data["x_test"].to(device), data["y_test"].to(device))
    wall = time.perf_counter() - start
    return summary(len(y_all) * epochs, train_seconds, wall, acc)


def run_jax(data: dict[str, torch.Tensor], epochs: int, seed: int) -> dict[str, Any]:
    """The recipe in JAX, NHWC, from the torch model's initial weights; SGD at LR on the
    mean cross-entropy, each epoch in cnnlab's order for the seed, the step jitted."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    weights = {
        k: jnp.asarray(v.detach().numpy()) for k, v in fresh_model(seed).state_dict().items()
    }
    params = {
        k: v.transpose(2, 3, 1, 0) if v.ndim == 4 else v for k, v in weights.items()
    }  # convolutions OIHW -> HWIO

    def conv(x: Any, w: Any, b: Any, pad: Any) -> Any:
        dims = ("NHWC", "HWIO", "NHWC")
        return lax.conv_general_dilated(x, w, (1, 1), pad, dimension_numbers=dims) + b

    def pool(x: Any) -> Any:
        return lax.reduce_window(x, 0.0, lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4

    def forward(p: dict[str, Any], x: Any) -> Any:
        x = pool(jax.nn.sigmoid(conv(x, p["0.weight"], p["0.bias"], ((2, 2), (2, 2)))))
        x = pool(jax.nn.sigmoid(conv(x, p["3.weight"], p["3.bias"], "VALID")))
        x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)  # torch's flatten order
        x = jax.nn.sigmoid(x @ p["7.weight"].T + p["7.bias"])
        x = jax.nn.sigmoid(x @ p["9.weight"].T + p["9.bias"])
        return x @ p["11.weight"].T + p["11.bias"]

    def loss(p: dict[str, Any], x: Any, y: Any) -> Any:
        logp = jax.nn.log_softmax(forward(p, x))
        return -jnp.take_along_axis(logp, y[:, None], axis=1).mean()

    @jax.jit
    def step(p: dict[str, Any], x: Any, y: Any) -> tuple[dict[str, Any], Any]:
        value, grads = jax.value_and_grad(loss)(p, x, y)
        return jax.tree.map(lambda w, g: w - LR * g, p, grads), value

    predict = jax.jit(lambda p, x: forward(p, x).argmax(1))
    x_all = data["x_train"].numpy().transpose(0, 2, 3, 1)
    y_all = data["y_train"].numpy().astype(np.int32)
    x_test = data["x_test"].numpy().transpose(0, 2, 3, 1)
    y_test = data["y_test"].numpy()
    start = time.perf_counter()
    for size in sorted({BATCH, len(y_all) % BATCH} - {0}):  # compile both shapes
        jax.block_until_ready(step(params, x_all[:size], y_all[:size]))
    compile_seconds = time.perf_counter() - start
    train_seconds = 0.0
    for epoch in range(epochs):
        t = time.perf_counter()
        order = epoch_order(len(y_all), seed, epoch, "cpu").numpy()
        losses = []
        for i in range(0, len(order), BATCH):
            index = order[i : i + BATCH]
            params, value = step(params, x_all[index], y_all[index])
            losses.append(value)
        jax.block_until_ready(losses)
        train_seconds += time.perf_counter() - t
        correct = sum(
            int((np.asarray(predict(params, x_test[i : i + 2000])) == y_test[i : i + 2000]).sum())
            for i in range(0, len(y_test), 2000)
        )
    wall = time.perf_counter() - start
    row = summary(len(y_all) * epochs, train_seconds, wall, correct / len(y_test))
    return {**row, "compile_seconds": round(compile_seconds, 2), "jax": jax.__version__}


def run_cnnlab(
    epochs: int,
    seed: int,
    data_dir: str | None,
    device: str = "cpu",
    compile: bool = False,
    fast: bool | None = True,
) -> dict[str, Any]:
    """``cnnlab.train`` of the book's recipe; ``fast`` None: the path it measures. On a CPU
    the row says which path ran and the threads it started with (config.json)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train(
            TrainConfig(
                epochs=epochs,
                seed=seed,
                device=device,
                data_dir=data_dir,
                out_dir=str(Path(tmp) / "run"),
                quiet=True,
                compile=compile,
                fast=fast,
            )
        )
        wall = time.perf_counter() - start
        environment = read_config(result.run_dir)["environment"]
    train_seconds = 60_000 * epochs / result.examples_per_sec
    row = summary(60_000 * epochs, train_seconds, wall, result.final["test_acc"])
    if device != "cpu":
        return {**row, "capture_seconds": round(result.capture_seconds, 3)}
    return {**row, "cpu_path": environment.get("cpu_path", {}), "threads": environment["threads"]}


def profile_step(data: dict[str, torch.Tensor], fused: bool, steps: int) -> dict[str, Any]:
    """Milliseconds per training step of each op (self CPU time, the 12 largest) for the
    plain loop's step, or with the blocks fused as cnnlab train runs them."""
    torch.set_flush_denormal(True)
    model = fresh_model(0).to(memory_format=torch.channels_last)
    net = pool_before_activation(fuse_layers(model) if fused else model)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    x = data["x_train"][:BATCH].contiguous(memory_format=torch.channels_last)
    y = data["y_train"][:BATCH]

    def step() -> None:
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    with torch.profiler.profile() as profile:
        for _ in range(steps):
            step()
    events = sorted(profile.key_averages(), key=lambda e: -e.self_cpu_time_total)
    per_step = [(e.key, e.self_cpu_time_total / steps / 1000) for e in events]
    return {
        "ms_per_step": round(sum(ms for _, ms in per_step), 2),
        "ops_ms": {key: round(ms, 3) for key, ms in per_step[:12]},
    }


def fashion_mnist(data_dir: str | None) -> dict[str, torch.Tensor]:
    """The real dataset as float images in [0, 1] (N, 1, 28, 28) and int64 labels."""
    train_set, test_set = load_dataset("fashion-mnist", data_dir)
    return {
        "x_train": torch.from_numpy(train_set.images).unsqueeze(1).float() / 255,
        "y_train": torch.from_numpy(train_set.labels).long(),
        "x_test": torch.from_numpy(test_set.images).unsqueeze(1).float() / 255,
        "y_test": torch.from_numpy(test_set.labels).long(),
    }


def summary(examples: int, train_seconds: float, wall: float, acc: float) -> dict[str, Any]:
    return {
        "examples_per_sec_train": round(examples / train_seconds, 1),
        "examples_per_sec_end_to_end": round(examples / wall, 1),
        "wall_seconds": round(wall, 2),
        "final_test_acc": round(acc, 4),
    }


def main(device: str = "cpu") -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="1 epoch per variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each variant, in turns")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--only",
        choices=[
            "book",
            "plain",
            "plain-compile",
            "jax",
            "cnnlab",
            "cnnlab-eager",
            "cnnlab-compile",
        ],
        action="append",
    )
    parser.add_argument(
        "--profile-steps", type=int, default=20, help="steps to profile (CPU; 0: no profile)"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--isa",
        choices=list(TORCH_LEVELS),
        default="native",
        help="the instruction set of the kernels and of PyTorch's own",
    )
    args = parser.parse_args()
    use_isa(args.isa)
    if args.threads:
        torch.set_num_threads(args.threads)
    epochs = 1 if args.quick else args.epochs
    logging.getLogger("cnnlab").setLevel(logging.WARNING)

    data = fashion_mnist(args.data_dir)
    variants = args.only or ["book", "plain", "cnnlab"]
    if device == "cuda" and not args.only:  # cnnlab train --compile: only CUDA uses it
        variants.append("cnnlab-compile")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name in variants:
            if name == "book":
                row = run_book(data, epochs, args.seed, device)
            elif name == "jax":
                row = run_jax(data, epochs, args.seed)
            elif name in ("plain", "plain-compile"):
                row = run_plain(data, epochs, args.seed, device, name == "plain-compile")
            else:
                compile, fast = name == "cnnlab-compile", name != "cnnlab-eager"
                row = run_cnnlab(epochs, args.seed, args.data_dir, device, compile, fast)
            runs[name].append(row)
    results: dict[str, Any] = {}
    for name, rows in runs.items():
        results[name] = (
            rows[0]
            if len(rows) == 1
            else {
                key: statistics.median(row[key] for row in rows)
                for key in ("examples_per_sec_train", "wall_seconds")
            }
            | {"runs": rows}
        )
    report: dict[str, Any] = {
        "benchmark": f"{device}_speed",
        "isa": args.isa,
        "epochs": epochs,
        "seed": args.seed,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    if device == "cuda":
        report["gpu"] = torch.cuda.get_device_name()
    report["results"] = results
    if device == "cpu" and args.profile_steps:
        report["profile"] = {
            kind: profile_step(data, kind == "fused", args.profile_steps)
            for kind in ("plain", "fused")
        }
    for name in ("cnnlab", "cnnlab-eager", "cnnlab-compile", "plain-compile", "jax"):
        for base in ("book", "plain"):
            if name in results and base in results:
                ours, theirs = results[name], results[base]
                report[f"ratio_{name}_over_{base}"] = round(
                    ours["examples_per_sec_train"] / theirs["examples_per_sec_train"], 2
                )
                report[f"wall_ratio_{name}_over_{base}"] = round(
                    theirs["wall_seconds"] / ours["wall_seconds"], 2
                )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
