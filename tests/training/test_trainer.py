import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab import models
from cnnlab.data import datasets as ds
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.rundir import read_metrics
from cnnlab.training import TrainConfig, load_model, train
from cnnlab.training import parts as building
from cnnlab.training.checkpoint import read_checkpoint

pytestmark = pytest.mark.e2e  # trains runs to their end, or starts processes

TIMING = ("elapsed", "examples_per_sec", "train_seconds")  # differ run to run


def tiny_config(tmp_path: Path, directory: Path, **overrides: object) -> TrainConfig:
    values = {
        "dataset": "tiny",
        "data_dir": str(directory),
        "epochs": 2,
        "batch_size": 16,
        "device": "cpu",
        "out_dir": str(tmp_path / "run"),
        "quiet": True,
    }
    values.update(overrides)
    return TrainConfig(**values)  # type: ignore[arg-type]


def test_run_writes_everything(tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path) -> None:
    _, directory = tiny_dataset
    result = train(tiny_config(tmp_path, directory))
    run = result.run_dir
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint.safetensors",
        "config.json",
        "curves.png",
        "metrics.csv",
        "metrics.jsonl",
        "model.json",
        "model.safetensors",
    ]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["type"] == "epoch"] == [1, 2]
    # 6 batches an epoch: like the book, a curve point every max(1, 6 // 5) = 1 batches
    assert sum(r["type"] == "point" for r in rows) == 12
    assert len(result.history) == 2 and 0 <= result.final["test_acc"] <= 1
    config = json.loads((run / "config.json").read_text())
    assert config["lr"] == 0.9 and config["environment"]["torch"] == torch.__version__
    model, meta = load_model(run)
    assert meta["classes"][0] == "class0" and meta["preprocessing"]["input_shape"] == [1, 28, 28]
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_a_run_trains_the_parts_it_is_handed(tmp_path: Path) -> None:
    """No dataset files: a model, an optimizer and images already in memory."""
    from cnnlab.data import ImageSet
    from cnnlab.models import create_model
    from cnnlab.training.control import StopOnSignal
    from cnnlab.training.parts import Parts
    from cnnlab.training.run import Run

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 64).astype(np.uint8)
    images = (labels[:, None, None] * 200 + rng.integers(0, 50, (64, 28, 28))).astype(np.uint8)
    torch.manual_seed(0)
    model = create_model("lenet-relu", num_classes=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    parts = Parts(model, optimizer, ImageSet(images, labels), ImageSet(images, labels), ("a", "b"))
    run = Run(TrainConfig(batch_size=16, quiet=True), parts, tmp_path)
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(8):
        run.train_epoch(StopOnSignal())
        row = run.finish_epoch(wall_start=0.0)
    assert run.state.step == 32 and row["epoch"] == 8
    assert all(not a.equal(b) for a, b in zip(before, model.parameters(), strict=True))
    assert row["test_acc"] > 0.9 and row["train_loss"] < run.state.history[0]["train_loss"]


def test_same_seed_same_numbers(tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path) -> None:
    _, directory = tiny_dataset
    a = train(tiny_config(tmp_path, directory, out_dir=str(tmp_path / "a")))
    b = train(tiny_config(tmp_path, directory, out_dir=str(tmp_path / "b")))
    c = train(tiny_config(tmp_path, directory, out_dir=str(tmp_path / "c"), seed=1))
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in a.history]
    assert strip == [{k: v for k, v in r.items() if k not in TIMING} for r in b.history]
    assert (tmp_path / "a/model.safetensors").read_bytes() == (
        tmp_path / "b/model.safetensors"
    ).read_bytes()
    assert a.history[-1]["train_loss"] != c.history[-1]["train_loss"]


def test_learns_on_separable_data(tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path) -> None:
    _, directory = tiny_dataset
    result = train(tiny_config(tmp_path, directory, epochs=15, batch_size=8, lr=0.1, model="lenet"))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_refuses_a_non_empty_run_dir(tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path) -> None:
    _, directory = tiny_dataset
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("precious")
    with pytest.raises(
        CheckpointError, match="already exists and is not empty; cnnlab never overwrites"
    ):
        train(tiny_config(tmp_path, directory))
    assert (tmp_path / "run" / "keep.txt").read_text() == "precious"


def test_refuses_an_unwritable_place(tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path) -> None:
    _, directory = tiny_dataset
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is not a writable directory"):
        train(tiny_config(tmp_path, directory, out_dir=str(tmp_path / "file" / "run")))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_refused(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path
) -> None:
    _, directory = tiny_dataset
    with pytest.raises(ConfigError, match=r"device 'cuda' is not available .* use --device auto"):
        train(tiny_config(tmp_path, directory, device="cuda"))


def test_scratch_backend_trains_like_torch(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path
) -> None:
    _, directory = tiny_dataset
    ours = train(tiny_config(tmp_path, directory, backend="scratch", out_dir=str(tmp_path / "s")))
    theirs = train(tiny_config(tmp_path, directory, out_dir=str(tmp_path / "t")))
    for a, b in zip(ours.history, theirs.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)
    model, meta = load_model(ours.run_dir)
    assert meta["model_options"]["backend"] == "scratch"
    assert type(model[0]).__module__ == "cnnlab.layers.conv"


@pytest.mark.parametrize(
    "options",
    [
        {"optimizer": "momentum", "schedule": "cosine", "weight_decay": 5e-4},
        {"optimizer": "nesterov", "schedule": "onecycle", "label_smoothing": 0.1},
        {
            "optimizer": "adamw",
            "lr": 1e-3,
            "weight_decay": 0.05,
            "init": "kaiming",
            "model": "lenet-relu-max",
            "model_options": "kernel=3 channels=8,16 dense=32 dropout=0.1",
        },
    ],
)
def test_training_options(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path, options: dict[str, object]
) -> None:
    _, directory = tiny_dataset
    result = train(tiny_config(tmp_path, directory, **options))
    assert all(math.isfinite(r["train_loss"]) for r in result.history)
    model, meta = load_model(result.run_dir)  # the options travel with the weights
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    if "model_options" in options:
        assert meta["model_options"]["channels"] == [8, 16]


def saved_optimizer(run: Path) -> dict[str, object]:
    """The optimizer settings and scheduler state the run's last checkpoint holds."""
    meta = read_checkpoint(run)[1]
    return {**meta["param_groups"][0], "scheduler": meta["scheduler"]}


def test_optimizer_options_reach_the_optimizer(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path
) -> None:
    _, directory = tiny_dataset
    for name, options, expected in [
        ("sgd", {}, {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0}),
        (
            "momentum",
            {"momentum": 0.8, "weight_decay": 1e-3},
            {"momentum": 0.8, "nesterov": False, "weight_decay": 1e-3},
        ),
        ("nesterov", {}, {"momentum": 0.9, "nesterov": True}),
        (
            "adamw",
            {"lr": 1e-3, "weight_decay": 0.05},
            {"lr": 1e-3, "weight_decay": 0.05, "betas": [0.9, 0.999]},
        ),
    ]:
        run = tmp_path / name
        train(
            tiny_config(tmp_path, directory, optimizer=name, out_dir=str(run), epochs=1, **options)
        )  # type: ignore[arg-type]
        group = saved_optimizer(run)
        assert {k: group[k] for k in expected} == expected, name


def test_schedule_sets_the_learning_rate_at_each_step(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path
) -> None:
    """96 examples in batches of 16: 6 steps, at the end of which a cosine is at 0."""
    _, directory = tiny_dataset
    train(tiny_config(tmp_path, directory, schedule="cosine", lr=0.5, epochs=1))
    cosine = saved_optimizer(tmp_path / "run")
    assert cosine["scheduler"]["last_epoch"] == 6  # type: ignore[index]
    assert cosine["lr"] == pytest.approx(0.0, abs=1e-12) and cosine["initial_lr"] == 0.5
    train(
        tiny_config(
            tmp_path,
            directory,
            schedule="constant",
            lr=0.5,
            epochs=1,
            out_dir=str(tmp_path / "constant"),
        )
    )
    assert saved_optimizer(tmp_path / "constant")["lr"] == 0.5


def test_label_smoothing_and_weight_decay_take_effect(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path
) -> None:
    _, directory = tiny_dataset

    def run(name: str, **options: object) -> tuple[float, float]:
        result = train(
            tiny_config(
                tmp_path, directory, out_dir=str(tmp_path / name), lr=0.1, epochs=1, **options
            )
        )  # type: ignore[arg-type]
        model, _ = load_model(result.run_dir)
        norm = sum(p.detach().pow(2).sum() for p in model.parameters()).item()
        return read_metrics(result.run_dir)[0][0]["train_loss"], norm

    plain = run("plain")
    smoothed = run("smoothed", label_smoothing=0.5)
    decayed = run("decayed", weight_decay=0.5)
    # the first curve point is the first batch's loss, before any step: with targets
    # smoothed towards uniform, the same initial predictions score a different loss
    assert smoothed[0] != plain[0] and decayed[0] == plain[0]
    assert decayed[1] < 0.99 * plain[1]  # decay pulls the weights towards zero


def test_augmentation_validation_split_and_tta(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path
) -> None:
    _, directory = tiny_dataset
    # fast: the fused kernels, not a choice measured again between the runs (a busy
    # machine's provisional choice can flip between paths, whose sums differ in the last bits)
    options = {"augment": "crop,flip,erase", "val_size": 16, "tta": True, "fast": True}
    a = train(tiny_config(tmp_path, directory, out_dir=str(tmp_path / "a"), **options))
    b = train(tiny_config(tmp_path, directory, out_dir=str(tmp_path / "b"), **options))
    plain = train(tiny_config(tmp_path, directory, out_dir=str(tmp_path / "c"), val_size=16))
    assert all(0 <= r["val_acc"] <= 1 for r in a.history)
    assert a.final["train_loss"] == b.final["train_loss"]  # augmentation follows the seed
    assert a.final["train_loss"] != plain.final["train_loss"]
    points = [json.loads(line) for line in (a.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["type"] == "point" for r in points) == 10  # 80 examples left: 5 batches
    assert load_model(a.run_dir)[1]["tta"] is True  # eval, predict and report use it too


def test_model_options_as_a_toml_table(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path
) -> None:
    from cnnlab.fsutil import load_toml

    _, directory = tiny_dataset
    (tmp_path / "run.toml").write_text(
        'model = "lenet-relu"\n[model_options]\nkernel = 3\nchannels = [4, 8]\nbatch_norm = true\n'
    )
    values = load_toml(tmp_path / "run.toml", "config file")
    result = train(tiny_config(tmp_path, directory, epochs=1, **values))
    _, meta = load_model(result.run_dir)
    assert {k: meta["model_options"][k] for k in ("kernel", "channels", "batch_norm")} == {
        "kernel": 3,
        "channels": [4, 8],
        "batch_norm": True,
    }
    flags = TrainConfig(model_options={"kernel": 3, "channels": [4, 8]}).to_flags()
    assert flags == ["--model-options=kernel=3 channels=4,8"]  # what torchrun workers get


def test_bad_model_options(tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path) -> None:
    _, directory = tiny_dataset
    with pytest.raises(ConfigError, match="bad model option 'width=3'"):
        train(tiny_config(tmp_path, directory, model_options="width=3"))
    with pytest.raises(ConfigError, match="model option kernel takes a value like 5, got 'big'"):
        train(tiny_config(tmp_path, directory, model_options="kernel=big"))
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_early_stop_and_keep_best(tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path) -> None:
    _, directory = tiny_dataset
    result = train(
        tiny_config(tmp_path, directory, epochs=30, val_size=32, early_stop=2, keep="best", lr=0.3)
    )
    history = result.history
    val = [r["val_acc"] for r in history]
    best = val.index(max(val)) + 1
    assert len(history) < 30 and len(history) == best + 2  # two epochs without a better one
    _, meta = load_model(result.run_dir)
    assert meta["keep"] == "best" and meta["final"]["epoch"] == best
    assert meta["epochs_trained"] == len(history)
    assert (result.run_dir / "model.safetensors").read_bytes() == (
        result.run_dir / "best.safetensors"
    ).read_bytes()
    csv = (result.run_dir / "metrics.csv").read_text().splitlines()
    assert csv[0].startswith("epoch,train_loss,train_acc,test_acc,val_acc") and len(csv) == 1 + len(
        history
    )


@pytest.mark.parametrize("has_bf16", [True, False])
def test_bf16_precision_autocasts_where_the_cpu_has_bf16_and_else_says_so(
    tiny_dataset: tuple[ds.Dataset, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    has_bf16: bool,
) -> None:
    _, directory = tiny_dataset
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: has_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    seen: list[torch.dtype] = []
    create = models.create_model

    def spying(*args: object, **kwargs: object) -> torch.nn.Module:
        model = create(*args, **kwargs)  # type: ignore[arg-type]
        model[-1].register_forward_hook(lambda m, i, out: seen.append(out.dtype))
        return model

    monkeypatch.setattr(building, "create_model", spying)
    # caplog listens at the root, where the CLI's own handler may have stopped cnnlab's lines
    monkeypatch.setattr(logging.getLogger("cnnlab"), "propagate", True)
    result = train(tiny_config(tmp_path, directory, precision="bf16", epochs=1))
    wanted = torch.bfloat16 if has_bf16 else torch.float32
    # every step and evaluation, the last layer's output (after the blank batch the model is
    # tried on before anything is written, which runs outside autocast)
    assert seen[0] == torch.float32 and seen[1:] and set(seen[1:]) == {wanted}
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["environment"]["precision"] == ("bf16" if has_bf16 else "fp32")
    notices = [r.getMessage() for r in caplog.records if "--precision" in r.getMessage()]
    assert notices == (
        []
        if has_bf16
        else [
            "--precision bf16: this CPU has neither AVX512-BF16 nor AMX, so this run trains in fp32"
        ]
    )


def test_sigterm_during_the_last_evaluation_stops_the_run_with_a_checkpoint(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was ignored: the loop had no epoch left in which to notice it."""
    import os
    import signal

    from cnnlab.training.control import Interrupted
    from cnnlab.training.run import Run

    _, directory = tiny_dataset
    evaluate = Run.evaluate
    calls = []

    def evaluate_then_signal(self: Run, batches: object) -> float:
        calls.append(1)
        if len(calls) == 2:  # the second epoch's (the last) evaluation
            os.kill(os.getpid(), signal.SIGTERM)
        return evaluate(self, batches)  # type: ignore[arg-type]

    monkeypatch.setattr(Run, "evaluate", evaluate_then_signal)
    with pytest.raises(
        Interrupted, match="SIGTERM: stopped after epoch 2; checkpoint saved"
    ) as stopped:
        train(tiny_config(tmp_path, directory, epochs=2))
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert not (tmp_path / "run" / "model.safetensors").exists()
    resumed = tiny_config(tmp_path, directory, epochs=2, out_dir=None, resume=str(tmp_path / "run"))
    result = train(resumed)
    assert len(result.history) == 2 and (tmp_path / "run" / "model.safetensors").exists()


def test_a_resumed_run_removes_the_temporary_files_of_killed_writes(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path
) -> None:
    _, directory = tiny_dataset
    run = train(tiny_config(tmp_path, directory, epochs=1)).run_dir
    leftovers = [run / ".checkpoint.safetensors.k2j3h4.tmp", run / ".metrics.jsonl.a1b2.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a write")
    (run / "notes.tmp").write_text("the user's own")  # not cnnlab's naming: kept
    train(tiny_config(tmp_path, directory, epochs=2, out_dir=None, resume=str(run)))
    assert not any(path.exists() for path in leftovers)
    assert (run / "notes.tmp").exists()


def test_a_thousand_conv_blocks_are_one_line_not_an_overflow(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cnnlab.cli import main

    channels = ",".join(["1"] * 1000)
    for extra in ([], ["kernel=1 pad_all=true"]):
        options = " ".join([f"channels={channels}", *extra])
        assert main(["train", "--model-options", options, "--epochs", "1"]) == 1
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith("error: 1000 conv blocks with kernel") and "fewer blocks" in line


def test_importing_the_trainer_loads_no_plotting() -> None:
    """A script that only trains (or a torchrun worker) pays for no plotting library:
    matplotlib and PIL load when a run draws its curves, not when the trainer loads."""
    code = (
        "import sys; from cnnlab.training import TrainConfig, train; "
        "print([m for m in ('PIL', 'matplotlib') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout == "[]\n", done.stderr


@pytest.mark.parametrize("fast", ["--fast", "--no-fast"])
def test_from_the_command_line_to_the_optimizer_step_is_six_frames(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path, fast: str
) -> None:
    """cli.main -> cmd_train -> train -> fit -> Run.train_epoch -> Step.__call__: the
    stack a learner reads at ``optimizer.step()``, taken from a real step."""
    import traceback

    from torch.optim.optimizer import register_optimizer_step_pre_hook

    import cnnlab
    from cnnlab.cli import main

    _, directory = tiny_dataset
    ours = str(Path(cnnlab.__file__).parent)
    stacks: list[list[str]] = []

    def record(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        frames = traceback.extract_stack()
        stacks.append(
            [f"{Path(f.filename).stem}.{f.name}" for f in frames if f.filename.startswith(ours)]
        )

    hook = register_optimizer_step_pre_hook(record)
    try:
        args = ["--dataset", "tiny", "--data-dir", str(directory), "--batch-size", "32", fast]
        assert (
            main(["train", *args, "--epochs", "1", "--out-dir", str(tmp_path / "run"), "--quiet"])
            == 0
        )
    finally:
        hook.remove()
    assert stacks, "no optimizer step was taken"
    assert stacks[0] == [
        "cli.main",
        "cli.cmd_train",
        "trainer.train",
        "trainer.fit",
        "run.train_epoch",
        "step.__call__",
    ]
    assert all(stack == stacks[0] for stack in stacks)
