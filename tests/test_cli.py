"""The command line: real subprocesses for the smoke tests, in-process for tiny runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab.data import datasets as ds
from cnnlab.training import TrainConfig
from tests.conftest import run_cnnlab

pytestmark = pytest.mark.e2e  # trains runs to their end, or starts processes


def test_help_and_summary() -> None:
    assert "train" in run_cnnlab("--help").stdout
    out = run_cnnlab("summary").stdout
    assert "61,706" in out and "416,520" in out and "16x5x5" in out
    out = run_cnnlab("summary", "--model-options", "kernel=3 channels=8,16").stdout
    assert "16x6x6" in out
    out = run_cnnlab("models").stdout
    assert "lenet-bn             62,158        416,520     28  lenet with batch_norm=True" in out
    assert "``" not in out  # plain text, no reST markup
    assert (
        "alexnet          46,764,746    938,146,176    224  AlexNet (Krizhevsky et al., 2012)"
        in out
    )


def test_missing_data_names_the_fix(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path), "CNNLAB_DATA": str(tmp_path / "empty")}
    result = run_cnnlab("train", "--out-dir", str(tmp_path / "run"), env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "not found in" in result.stderr and "(given by CNNLAB_DATA)" in result.stderr
    assert "drop CNNLAB_DATA and cnnlab will download them" in result.stderr
    assert not (tmp_path / "run").exists()


def test_bad_flag_values_are_clear() -> None:
    result = run_cnnlab("train", "--epochs", "0")
    assert result.returncode == 1 and "epochs must be a positive integer, got 0" in result.stderr
    result = run_cnnlab("train", "--model", "resnet")
    assert result.returncode == 1 and "unknown model 'resnet'" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_file_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "run.toml").write_text("lr = 0.1\nlearning_rate = 0.1\n")
    result = run_cnnlab("train", "--config", str(tmp_path / "run.toml"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{tmp_path / 'run.toml'}: unknown config keys ['learning_rate']" in result.stderr
    (tmp_path / "run.toml").write_text("lr = [")
    result = run_cnnlab("train", "--config", str(tmp_path / "run.toml"))
    assert result.returncode == 1 and "not a readable TOML file" in result.stderr
    result = run_cnnlab("train", "--recipe", "fastest")
    assert result.returncode == 2 and "invalid choice: 'fastest'" in result.stderr


def test_verify_reports_corrupt_files(tmp_path: Path) -> None:
    from tests.conftest import run_cnnlab, write_dataset

    write_dataset(tmp_path)  # right names, wrong contents for fashion-mnist
    result = run_cnnlab("data", "verify", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "checksum mismatch" in result.stderr and "Traceback" not in result.stderr


def test_eval_and_predict_on_a_missing_run(tmp_path: Path) -> None:
    for command in (["eval", str(tmp_path)], ["predict", str(tmp_path), "x.png"]):
        result = run_cnnlab(*command)
        assert result.returncode == 1 and "model.json not found" in result.stderr


def test_train_eval_predict_in_process(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, directory = tiny_dataset
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                "tiny",
                "--data-dir",
                str(directory),
                "--epochs",
                "2",
                "--batch-size",
                "32",
                "--out-dir",
                str(run),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "epoch 2/2:" in out
    assert "examples/sec on cpu" in out and ", train acc " in out

    assert main(["eval", str(run), "--data-dir", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "test acc" in out and "class9" in out

    # flags beat the config file, which beats the recipe, which beats the defaults
    (tmp_path / "run.toml").write_text(
        f'recipe = "best"\nepochs = 3\nbatch-size = 32\ndata_dir = "{directory}"\n'
        'dataset = "tiny"\ndevice = "cpu"\nquiet = true\n'
    )
    assert (
        main(
            [
                "train",
                "--config",
                str(tmp_path / "run.toml"),
                "--epochs",
                "1",
                "--out-dir",
                str(tmp_path / "best"),
            ]
        )
        == 0
    )
    config = json.loads((tmp_path / "best" / "config.json").read_text())
    best = TrainConfig.from_dict({"recipe": "best"})
    assert (config["epochs"], config["batch_size"]) == (1, 32)
    assert (config["model"], config["model_options"]) == (best.model, best.model_options)
    capsys.readouterr()

    Image.fromarray(np.full((50, 40, 3), 200, np.uint8)).save(tmp_path / "photo.jpg")
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "digit.png")
    (tmp_path / "notes.png").write_text("not an image")
    code = main(
        [
            "predict",
            str(run),
            str(tmp_path / "photo.jpg"),
            str(tmp_path / "notes.png"),
            str(tmp_path / "digit.png"),
            "--invert",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "notes.png: not a readable image" in captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(tmp_path / "photo.jpg"))
    assert lines[1].count("class") == 3


def test_os_errors_are_one_line_with_the_fix(
    tiny_dataset: tuple[ds.Dataset, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A full disk while checkpointing: one line naming the file and the fix, the run's
    earlier files untouched."""
    import errno

    from cnnlab.training import checkpoint

    _, directory = tiny_dataset

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "x"))

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", full)
    code = main(
        [
            "train",
            "--dataset",
            "tiny",
            "--data-dir",
            str(directory),
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--quiet",
            "--out-dir",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "No space left on device (the disk is full: free some space" in err
    assert (tmp_path / "run" / "config.json").exists()


def test_a_model_too_big_for_memory_is_refused(
    tiny_dataset: tuple[ds.Dataset, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, directory = tiny_dataset
    code = main(
        [
            "train",
            "--dataset",
            "tiny",
            "--data-dir",
            str(directory),
            "--device",
            "cpu",
            "--model-options",
            "channels=100000,100000",
            "--out-dir",
            str(tmp_path / "r"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "does not fit in memory" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("kind", ["dangling", "looping"])
def test_an_out_dir_symlink_to_nowhere_is_one_line(
    tiny_dataset: tuple[ds.Dataset, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    _, directory = tiny_dataset
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "nowhere" if kind == "dangling" else link)
    code = main(
        [
            "train",
            "--dataset",
            "tiny",
            "--data-dir",
            str(directory),
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--quiet",
            "--out-dir",
            str(link),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert f"cannot create {link}: it is a symbolic link to nowhere" in err


def test_a_closed_pipe_does_not_end_a_training_run(tmp_path: Path) -> None:
    """`cnnlab train --epochs 3 | head -1`: the reader leaves after one line; the run
    still trains all its epochs and saves everything, and stderr says what happened."""
    from tests.conftest import write_dataset

    write_dataset(tmp_path / "data")
    run = tmp_path / "run"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cnnlab",
            "train",
            "--dataset",
            "idx",
            "--data-dir",
            str(tmp_path / "data"),
            "--epochs",
            "3",
            "--batch-size",
            "16",
            "--lr",
            "0.1",
            "--out-dir",
            str(run),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()  # as head -1 does
    stderr = process.stderr.read()
    assert process.wait(timeout=300) == 0, stderr
    assert first.strip()
    assert "standard output was closed" in stderr
    assert (run / "model.safetensors").is_file() and (run / "curves.png").is_file()
    meta = json.loads((run / "model.json").read_text())
    assert meta["epochs_trained"] == 3


@pytest.mark.parametrize("after", [0.3, 0.8, 1.5])
def test_ctrl_c_while_starting_is_one_line(after: float) -> None:
    import signal
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "train", "--dataset", "idx", "--data-dir", "/nowhere"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(after)  # while Python, torch or the command's own modules load
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    print(after, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 1
    # 1: it got as far as finding no data; -SIGINT: the signal came as it was exiting after it
    assert process.returncode in (1, 130, -signal.SIGINT)


def test_a_summary_too_big_for_memory_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "--model-options", "channels=100000,100000"]) == 1
    assert "does not fit in memory" in capsys.readouterr().err


def test_every_option_of_every_command_shows_its_default() -> None:
    import argparse

    from cnnlab.cli import build_parser

    commands = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    for name, parser in commands.items():
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            shown = parser._get_formatter()._format_action(action)
            assert "default" in shown, f"cnnlab {name} --help: {action.option_strings[0]}"


@pytest.mark.parametrize(
    "words",
    [["--help"], ["shape", "--input", "8x8", "--kernel", "3"], ["data", "status"],
     ["train", "--help"], ["viz", "--help"], ["demo", "--help"], ["predict", "--help"]],
    ids=" ".join,
)  # fmt: skip
def test_the_quick_commands_answer_without_loading_torch(words: list[str]) -> None:
    import re

    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cnnlab", *words],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = [line for line in done.stderr.splitlines() if re.search(r"\|\s*torch$", line)]
    assert loaded == [], f"cnnlab {' '.join(words)} imported torch"


def test_long_commands_show_progress_on_a_terminal_and_nothing_more_when_piped(
    tmp_path: Path,
) -> None:
    import fcntl
    import os
    import pty
    import struct
    import termios

    from tests.conftest import write_dataset

    write_dataset(tmp_path / "data", n_train=64, n_test=40)
    run = tmp_path / "run"
    words = ["--dataset", "idx", "--data-dir", str(tmp_path / "data"), "--device", "cpu"]
    assert main(["train", *words, "--epochs", "1", "--out-dir", str(run), "--quiet"]) == 0

    def on_a_terminal(*args: str) -> str:  # a terminal of 100 columns, as a user's
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        process = subprocess.Popen(
            [sys.executable, "-m", "cnnlab", *args], stdout=follower, stderr=follower
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=120)
        os.close(leader)
        return b"".join(chunks).decode(errors="replace")

    lr_find = ["lr-find", *words, "--steps", "20", "--out-dir"]
    for terminal, piped, bar in (
        (["eval", str(run)], ["eval", str(run)], "test images"),
        (["report", str(run)], ["report", str(run)], "test images"),
        ([*lr_find, str(tmp_path / "lr1")], [*lr_find, str(tmp_path / "lr2")], "lr-find"),
    ):
        assert f"{bar}:" in on_a_terminal(*terminal)  # tqdm's bar, as training's
        done = run_cnnlab(*piped)
        assert done.returncode == 0 and "%|" not in done.stderr + done.stdout
