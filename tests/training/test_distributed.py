"""Two processes through torchrun (gloo, loopback, a free port) against one process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from cnnlab.rundir import CHECKPOINT
from tests.conftest import start_cnnlab, write_dataset

pytestmark = pytest.mark.distributed

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
    "10",
    "--quiet",
]


def train(*args: str) -> subprocess.Popen[str]:
    return start_cnnlab("train", *ARGS, *args)


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def assert_close_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-5


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    data = tmp_path_factory.mktemp("idx")
    write_dataset(data, n_train=1500, n_test=50)
    single = tmp_path_factory.mktemp("single") / "run"
    process = train("--data-dir", str(data), "--out-dir", str(single))
    assert process.wait(timeout=300) == 0, process.communicate()
    return data, single


def test_two_processes_match_one(setup: tuple[Path, Path], tmp_path: Path) -> None:
    data, single = setup
    run = tmp_path / "run"
    process = train("--data-dir", str(data), "--out-dir", str(run), "--nproc", "2")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert out.count("examples/sec on cpu") == 1  # rank 0 alone prints
    assert_close_weights(run, single)


def test_a_killed_worker_is_restarted_and_the_run_resumes(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    data, single = setup
    run = tmp_path / "run"
    process = train(
        "--data-dir", str(data), "--out-dir", str(run), "--nproc", "2", "--max-restarts", "1"
    )
    deadline = time.monotonic() + 120
    while not (run / CHECKPOINT).exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    (torchrun,) = children(process.pid)  # the launcher's one child
    workers = children(torchrun)
    assert len(workers) == 2
    os.kill(workers[-1], signal.SIGKILL)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    # torchrun saw the death and restarted the workers: one line says so, no tracebacks
    assert "a training process failed (exitcode -9: killed by SIGKILL); torchrun restarted" in err
    assert "Traceback" not in err
    assert_close_weights(run, single)


def test_nproc_from_python_trains_in_that_many_processes(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    from cnnlab.rundir import read_config
    from cnnlab.training import TrainConfig
    from cnnlab.training import train as train_from_python

    data, single = setup
    run = tmp_path / "run"
    config = TrainConfig(
        dataset="idx",
        data_dir=str(data),
        epochs=2,
        batch_size=16,
        lr=0.3,
        checkpoint_every=10,
        quiet=True,
        out_dir=str(run),
        nproc=2,
    )
    result = train_from_python(config)
    assert result.run_dir == run and [r["epoch"] for r in result.history] == [1, 2]
    assert result.examples_per_sec > 0 and result.device == "cpu"
    assert read_config(run)["environment"]["processes"] == 2  # what happened is recorded
    assert_close_weights(run, single)


def test_a_sigterm_to_the_workers_stops_both_at_one_point_and_the_run_resumes(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    """The ranks agree on a stop at the curve's points: both save one checkpoint there,
    and the resumed run ends with the single-process weights."""
    data, single = setup
    run = tmp_path / "run"
    process = train("--data-dir", str(data), "--out-dir", str(run), "--nproc", "2")
    deadline = time.monotonic() + 120
    while not (run / CHECKPOINT).exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    (torchrun,) = children(process.pid)
    for worker in children(torchrun):
        os.kill(worker, signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode != 0 and "SIGTERM: stopped at epoch" in err, err
    batches = -(-1500 // 16)
    every = batches // 5  # batches between the curve's points
    at = re.search(r"SIGTERM: stopped (at epoch \d+, step (\d+)|after epoch \d+)", err)
    assert at is not None, err
    assert at.group(2) is None or int(at.group(2)) % every == 0 or int(at.group(2)) == batches
    resumed = train("--resume", str(run), "--nproc", "2")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert_close_weights(run, single)


def test_a_killed_worker_without_restarts_is_one_line_with_the_resume_command(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    data, _ = setup
    run = tmp_path / "my run"  # a path a shell must quote
    process = train("--data-dir", str(data), "--out-dir", str(run), "--nproc", "2")
    deadline = time.monotonic() + 120
    while not (run / CHECKPOINT).exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    (torchrun,) = children(process.pid)
    os.kill(children(torchrun)[-1], signal.SIGKILL)
    _, err = process.communicate(timeout=300)
    print(err)
    assert process.returncode != 0
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"--resume '{run}'" in err
