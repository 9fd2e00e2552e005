"""Runs that survive: real processes, real signals, checkpoints compared bit for bit."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnlab.rundir import CHECKPOINT
from cnnlab.training.checkpoint import read_checkpoint
from tests.conftest import start_cnnlab, write_dataset

pytestmark = pytest.mark.e2e  # trains runs to their end, or starts processes

# --fast: the fused CPU kernels, not a measured choice between them and the eager layers,
# which would let the reference and the resumed run differ in rounding
ARGS = [
    "--dataset",
    "idx",
    "--epochs",
    "2",
    "--batch-size",
    "16",
    "--lr",
    "0.3",
    "--checkpoint-every",
    "7",
    "--quiet",
    "--fast",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("idx")
    write_dataset(directory, n_train=2000, n_test=50)
    return directory


def cnnlab(*args: str) -> subprocess.Popen[str]:
    return start_cnnlab("train", *args)


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run with the same seed."""
    run = tmp_path_factory.mktemp("ref") / "run"
    code, _, err = finish(cnnlab(*ARGS, "--data-dir", str(data), "--out-dir", str(run)))
    assert code == 0, err
    return run


def wait_for_checkpoint(run: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not (run / CHECKPOINT).exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)


def metric_rows(run: Path) -> list[dict[str, object]]:
    timing = ("elapsed", "examples_per_sec", "train_seconds")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in timing} for row in rows]


STEPS = 2 * 2000 // 16  # optimizer steps of a whole ARGS run (2000 training examples)


def kill_mid_run(process: subprocess.Popen[str], run: Path, target: int, steps: int = STEPS) -> int:
    """SIGKILL ``process`` as soon as its checkpoint holds step ``target`` or later (saves
    are atomic, so polling the file is safe; a wall-clock delay is not: a fast machine
    finishes the run inside it); check that it died by the signal with its run unfinished
    (else "resume" would have nothing to do); return the step the last checkpoint holds."""
    deadline = time.monotonic() + 120
    while int(read_checkpoint(run)[1]["step"]) < target:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    returncode, _, err = finish(process)
    assert returncode == -signal.SIGKILL, f"the run ended by itself ({returncode}): {err}"
    step = int(read_checkpoint(run)[1]["step"])
    assert target <= step < steps and not (run / "model.safetensors").exists()
    return step


def random_target(steps: int = STEPS) -> int:
    """A step past the first checkpoint and at most half way, so the kill lands mid-run;
    drawn from a seed that is printed (shown with a failure), and that ``KILL_SEED=N``
    sets to replay one."""
    seed = int(os.environ.get("KILL_SEED") or random.SystemRandom().randrange(2**32))
    target = random.Random(seed).randint(8, steps // 2)
    print(f"kill target: step {target} (KILL_SEED={seed} replays it)")
    return target


def resume_and_compare(run: Path, reference: Path) -> None:
    code, _, err = finish(cnnlab("--resume", str(run)))
    assert code == 0, err
    assert (run / "model.safetensors").read_bytes() == (
        reference / "model.safetensors"
    ).read_bytes()
    assert metric_rows(run) == metric_rows(reference)


@pytest.mark.parametrize("attempt", range(2))
def test_sigkill_at_a_random_step_then_resume_is_bit_identical(
    data: Path, reference: Path, tmp_path: Path, attempt: int
) -> None:
    run = tmp_path / "run"
    process = cnnlab(*ARGS, "--data-dir", str(data), "--out-dir", str(run))
    wait_for_checkpoint(run, process)
    target = random_target()
    step = kill_mid_run(process, run, target)
    print(f"killed once the checkpoint reached step {target}; resuming at step {step}")
    resume_and_compare(run, reference)


def test_sigkill_before_the_first_checkpoint_then_resume_trains_it_from_the_start(
    data: Path, reference: Path, tmp_path: Path
) -> None:
    """Killed as soon as it has written config.json, before any checkpoint: --resume
    refused it ('nothing to resume') and --out-dir refused the directory; now the run
    trains again from step 0 and ends as the uninterrupted one."""
    run = tmp_path / "run"
    process = cnnlab(*ARGS, "--data-dir", str(data), "--out-dir", str(run))
    deadline = time.monotonic() + 120
    while not (run / "config.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    assert finish(process)[0] == -signal.SIGKILL
    if (run / CHECKPOINT).exists():
        pytest.skip("the first checkpoint was written before the kill landed")
    code, out, err = finish(cnnlab("--resume", str(run)))
    assert code == 0, err
    assert "stopped before its first checkpoint: training it again from the start" not in out
    assert (run / "model.safetensors").read_bytes() == (
        reference / "model.safetensors"
    ).read_bytes()
    assert metric_rows(run) == metric_rows(reference)


def test_sigkill_and_resume_with_momentum_a_schedule_smoothing_and_augmentation(
    data: Path, tmp_path: Path
) -> None:
    """Optimizer state, the learning-rate schedule and the augmentation's random draws come
    back from the checkpoint too."""
    args = [
        *ARGS,
        "--optimizer",
        "nesterov",
        "--schedule",
        "onecycle",
        "--weight-decay",
        "5e-4",
        "--label-smoothing",
        "0.1",
        "--model-options",
        "dropout=0.2",
        "--augment",
        "crop,flip,erase",
        "--val-size",
        "100",
        "--tta",
    ]
    reference = tmp_path / "reference"
    code, _, err = finish(cnnlab(*args, "--data-dir", str(data), "--out-dir", str(reference)))
    assert code == 0, err
    run = tmp_path / "run"
    process = cnnlab(*args, "--data-dir", str(data), "--out-dir", str(run))
    wait_for_checkpoint(run, process)
    kill_mid_run(process, run, random_target())
    resume_and_compare(run, reference)


def test_sigkill_and_resume_with_early_stop_and_keep_best(data: Path, tmp_path: Path) -> None:
    """The early stop falls on the same epoch and the same best weights are kept."""
    args = [
        *ARGS[:2],
        *ARGS[4:],
        "--epochs",
        "12",
        "--val-size",
        "400",
        "--early-stop",
        "1",
        "--keep",
        "best",
        "--data-dir",
        str(data),
    ]
    reference = tmp_path / "reference"
    code, _, err = finish(cnnlab(*args, "--out-dir", str(reference)))
    assert code == 0, err
    epochs = json.loads((reference / "model.json").read_text())["epochs_trained"]
    assert epochs < 12  # it did stop early
    run = tmp_path / "run"
    process = cnnlab(*args, "--out-dir", str(run))
    wait_for_checkpoint(run, process)
    steps = epochs * 1600 // 16
    kill_mid_run(process, run, random_target(steps), steps=steps)
    resume_and_compare(run, reference)
    assert (run / "best.safetensors").read_bytes() == (reference / "best.safetensors").read_bytes()


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_signal_checkpoints_and_resumes(
    data: Path, reference: Path, tmp_path: Path, signum: int, code: int
) -> None:
    run = tmp_path / "run"
    process = cnnlab(*ARGS, "--data-dir", str(data), "--out-dir", str(run))
    wait_for_checkpoint(run, process)  # in the training loop: no wall-clock delay, which a
    process.send_signal(signum)  # fast machine outran by finishing all its steps inside it
    returncode, _, err = finish(process)
    assert returncode == code
    assert f"checkpoint saved. Resume with: cnnlab train --resume {run}" in err
    assert "Traceback" not in err
    resume_and_compare(run, reference)


def test_resume_with_more_epochs_extends_a_finished_run(
    data: Path, reference: Path, tmp_path: Path
) -> None:
    """``--resume RUN --epochs 2`` after a 1-epoch run ends where a 2-epoch run ends."""
    run = tmp_path / "run"
    one = [*ARGS[: ARGS.index("--epochs")], "--epochs", "1", *ARGS[ARGS.index("--epochs") + 2 :]]
    code, _, err = finish(cnnlab(*one, "--data-dir", str(data), "--out-dir", str(run)))
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["epochs"] == 1
    code, _, err = finish(cnnlab("--resume", str(run), "--epochs", "2", "--quiet"))
    assert code == 0, err
    assert [r["epoch"] for r in metric_rows(run) if r["type"] == "epoch"] == [1, 2]
    assert metric_rows(run) == metric_rows(reference)
    assert (run / "model.safetensors").read_bytes() == (
        reference / "model.safetensors"
    ).read_bytes()
    assert json.loads((run / "config.json").read_text())["epochs"] == 2  # recorded
    assert read_checkpoint(run)[1]["config"]["epochs"] == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-size", "64"], "--batch-size 64 differs from the run's saved batch_size = 16"),
        (["--lr", "0.1"], "--lr 0.1 differs from the run's saved lr = 0.3"),
        (["--model", "lenet-relu"], "--model lenet-relu differs from the run's saved model"),
        (["--epochs", "1"], "--epochs 1 is fewer than the 2 epochs the run has already trained"),
    ],
)
def test_resume_refuses_a_flag_that_would_change_the_run(
    reference: Path, flags: list[str], message: str
) -> None:
    before = (reference / CHECKPOINT).read_bytes()
    code, _, err = finish(cnnlab("--resume", str(reference), *flags))
    assert code == 1 and message in err and "Traceback" not in err
    assert (reference / CHECKPOINT).read_bytes() == before  # nothing touched


def test_resume_refuses_to_stretch_a_schedule(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, _, err = finish(
        cnnlab(
            "--dataset",
            "idx",
            "--data-dir",
            str(data),
            "--epochs",
            "1",
            "--batch-size",
            "500",
            "--schedule",
            "cosine",
            "--quiet",
            "--out-dir",
            str(run),
        )
    )
    assert code == 0, err
    code, _, err = finish(cnnlab("--resume", str(run), "--epochs", "3"))
    assert code == 1 and "cosine schedule was laid out over 1 epochs" in err


def test_second_ctrl_c_exits_at_once_and_keeps_the_checkpoint(
    data: Path, reference: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    process = cnnlab(*ARGS, "--data-dir", str(data), "--out-dir", str(run))
    wait_for_checkpoint(run, process)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    returncode, _, _ = finish(process)
    assert returncode != 0
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    read_checkpoint(run)  # whole and untampered
    resume_and_compare(run, reference)


def test_a_blown_up_learning_rate_stops_with_advice(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, _, err = finish(
        cnnlab(*ARGS, "--data-dir", str(data), "--out-dir", str(run), "--lr", "100")
    )
    assert code == 1
    assert "training diverged: the loss averages" in err and "at epoch 1, step" in err
    assert "Try a lower learning rate, e.g. --lr 10" in err and "Traceback" not in err
    assert not (run / "model.safetensors").exists()
    if (run / CHECKPOINT).exists():
        read_checkpoint(run)


def test_non_finite_loss_is_caught_at_its_step(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, _, err = finish(
        cnnlab(*ARGS, "--data-dir", str(data), "--out-dir", str(run), "--lr", "1e38")
    )
    assert code == 1 and "training diverged" in err and "epoch 1, step" in err


def test_resume_of_a_directory_without_checkpoint(tmp_path: Path) -> None:
    code, _, err = finish(cnnlab("--resume", str(tmp_path)))
    assert code == 1 and "no checkpoint in" in err and "Traceback" not in err


def test_runs_started_together_never_share_a_directory(data: Path, tmp_path: Path) -> None:
    """Three runs in the same second without --out-dir: three complete run directories."""
    args = [
        "--dataset",
        "idx",
        "--data-dir",
        str(data),
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--quiet",
    ]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "cnnlab", "train", *args, "--seed", str(seed)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(3)
    ]
    results = [finish(p) for p in processes]
    assert [code for code, _, _ in results] == [0, 0, 0], [err for _, _, err in results]
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 3
    seeds = sorted(json.loads((run / "config.json").read_text())["seed"] for run in runs)
    assert seeds == [0, 1, 2]
    for run in runs:
        assert (run / "model.safetensors").exists()
        assert [r["epoch"] for r in metric_rows(run) if r["type"] == "epoch"] == [1]


def test_a_run_directory_in_use_is_refused(data: Path, reference: Path, tmp_path: Path) -> None:
    """Two runs given one --out-dir, two resumes of one run: the second is refused and the
    first ends whole."""
    run = tmp_path / "run"
    first = cnnlab(*ARGS, "--data-dir", str(data), "--out-dir", str(run))
    wait_for_checkpoint(run, first)
    first.send_signal(signal.SIGSTOP)  # paused mid-run, still holding the directory
    try:
        code, _, err = finish(cnnlab(*ARGS, "--data-dir", str(data), "--out-dir", str(run)))
        assert code == 1 and "Traceback" not in err and "is not empty" in err
        code, _, err = finish(cnnlab("--resume", str(run)))
        assert code == 1 and f"another cnnlab process is training in {run}" in err
    finally:
        first.send_signal(signal.SIGCONT)
    code, _, err = finish(first)
    assert code == 0, err
    assert metric_rows(run) == metric_rows(reference)


def test_a_run_directory_from_before_the_refactor_resumes(
    tiny_dataset: tuple[object, Path], tmp_path: Path
) -> None:
    """tests/training/fixtures/run-2026-12-05 was written by the trainer as it was before
    the step, the config and the outputs moved (see the fixtures' README): today's code
    resumes it, keeps its first epoch, and trains the second as an unbroken run does."""
    import shutil

    from safetensors.torch import load_file

    from cnnlab.training import TrainConfig, train

    _, directory = tiny_dataset
    run = tmp_path / "old"
    shutil.copytree(Path(__file__).with_name("fixtures") / "run-2026-12-05", run)
    before = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    resumed = train(TrainConfig(resume=str(run), epochs=2, data_dir=str(directory), quiet=True))
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert json.loads((run / "config.json").read_text())["out_dir"] == str(run)  # not the old
    assert resumed.history[0] == before  # kept as it was (its timings too), not retrained
    common = {"dataset": "tiny", "data_dir": str(directory), "batch_size": 32, "device": "cpu"}
    fresh = train(
        TrainConfig(
            epochs=2,
            fast=False,
            quiet=True,
            model_options="channels=2,4 dense=8",
            out_dir=str(tmp_path / "fresh"),
            **common,
        )
    )
    assert resumed.history[1]["test_acc"] == fresh.history[1]["test_acc"]
    old, new = load_file(run / "model.safetensors"), load_file(fresh.run_dir / "model.safetensors")
    for key, value in new.items():  # another torch may sum in another order: to rounding
        torch.testing.assert_close(old[key], value, rtol=1e-4, atol=1e-6)
