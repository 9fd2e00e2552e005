"""Run files edited by hand (or by someone else), each re-signed where it is signed: every
edit the review found ends in one line naming the file and the field, never a traceback,
garbage metrics or a lost run; the untouched run still resumes afterwards."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from cnnlab.errors import CnnlabError
from cnnlab.rundir import CHECKPOINT, load_model, read_config, read_metrics
from cnnlab.training import TrainConfig, train
from cnnlab.training.checkpoint import _digest
from tests.conftest import run_cnnlab, write_dataset

pytestmark = pytest.mark.e2e  # trains runs to their end, or starts processes

Edit = Callable[[dict[str, torch.Tensor], dict[str, Any]], None]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch run of two planned, with a checkpoint mid-way through epoch 1 kept too."""
    root = tmp_path_factory.mktemp("edited")
    write_dataset(root / "data", n_train=64, n_test=32)
    config = TrainConfig(
        dataset="idx",
        data_dir=str(root / "data"),
        epochs=1,
        batch_size=16,
        lr=0.1,
        device="cpu",
        out_dir=str(root / "run"),
        quiet=True,
    )
    return train(config).run_dir


def copy_of(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    copy.mkdir()
    for f in run.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    return copy


def resign(run: Path, edit: Edit) -> None:
    """Edit the checkpoint's tensors and metadata, then write it with a fresh digest, as
    someone who knows the format would."""
    blob = (run / CHECKPOINT).read_bytes()
    tensors = load_safetensors(blob)
    meta = json.loads(
        json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])["__metadata__"]["cnnlab"]
    )
    edit(tensors, meta)
    meta["digest"] = _digest(tensors, meta)
    (run / CHECKPOINT).write_bytes(save_safetensors(tensors, metadata={"cnnlab": json.dumps(meta)}))


def group(key: str, value: Any) -> Edit:
    return lambda tensors, meta: meta["param_groups"][0].__setitem__(key, value)


def tensor(name: str, value: torch.Tensor) -> Edit:
    return lambda tensors, meta: tensors.__setitem__(name, value)


def field(key: str, value: Any) -> Edit:
    return lambda tensors, meta: meta.__setitem__(key, value)


CHECKPOINT_EDITS = {
    "rng.torch of the wrong size": (
        tensor("rng.torch", torch.zeros(100, dtype=torch.uint8)),
        "rng.torch must be",
    ),
    "a string lr": (group("lr", "0.1"), "param_groups must be"),
    "a string momentum": (group("momentum", "fast"), "param_groups must be"),
    "lr 1e300": (group("lr", 1e300), "param_groups must be"),
    "a batch past the epoch's end": (
        lambda tensors, meta: meta.update(batch=10, step=20),
        "do not fit an epoch of 4 batches",
    ),
    "vector sums": (tensor("acc.loss_sum", torch.zeros(3)), "acc.loss_sum must be one number"),
    "NaN sums": (
        tensor("acc.loss_sum", torch.tensor(float("nan"))),
        "acc.loss_sum must be a finite",
    ),
    "seen 10^15": (field("seen", 10**15), "do not fit an epoch"),
    "a string epoch row": (field("history", [{"type": "epoch", "epoch": "1"}]), "history must be"),
    "a scheduler with other keys": (
        field("scheduler", {"optimizer": 1, "last_epoch": 0}),
        "scheduler must be",
    ),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_EDITS))
def test_an_edited_resigned_checkpoint_is_one_line_and_loses_nothing(
    case: str, stopped_run: Path, tmp_path: Path
) -> None:
    edit, said = CHECKPOINT_EDITS[case]
    run = copy_of(stopped_run, tmp_path)
    original = (run / CHECKPOINT).read_bytes()
    resign(run, edit)
    edited = (run / CHECKPOINT).read_bytes()
    with pytest.raises(CnnlabError) as refused:
        train(TrainConfig(resume=str(run), epochs=2, quiet=True))
    message = str(refused.value)
    assert said in message and str(run / CHECKPOINT) in message and "\n" not in message
    assert (run / CHECKPOINT).read_bytes() == edited  # refused, not overwritten
    (run / CHECKPOINT).write_bytes(original)
    assert len(train(TrainConfig(resume=str(run), epochs=2, quiet=True)).history) == 2


def test_an_edited_metrics_row_is_one_line_on_every_reader(
    stopped_run: Path, tmp_path: Path
) -> None:
    run = copy_of(stopped_run, tmp_path)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    row = json.loads(lines[-1])
    lines[-1] = json.dumps({**row, "epoch": "one"})
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(CnnlabError, match=r"metrics\.jsonl: line \d+: epoch must be a number"):
        read_metrics(run)
    for words in (["report", str(run)], ["viz", "curves", str(run)]):
        done = run_cnnlab(*words)
        assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "epoch must be a number" in done.stderr


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (lambda meta: meta["preprocessing"].pop("background"), "preprocessing.background must"),
        (lambda meta: meta.__setitem__("tta", "yes"), "tta must be true or false"),
        (lambda meta: meta.__setitem__("classes", "abc"), "classes must be a list"),
        (lambda meta: meta.__setitem__("final", 3), "final must be a table"),
    ],
)
def test_an_edited_model_json_is_one_line(
    edit: Callable[[dict[str, Any]], None], said: str, stopped_run: Path, tmp_path: Path
) -> None:
    run = copy_of(stopped_run, tmp_path)
    meta = json.loads((run / "model.json").read_text())
    edit(meta)
    (run / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CnnlabError, match=said):
        load_model(run)
    done = run_cnnlab("export", str(run), "--format", "torchscript")
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize("text", ["[1, 2]", '{"environment": 3}', "NaN", '{"lr": Infinity}'])
def test_an_edited_config_json_is_one_line(text: str, stopped_run: Path, tmp_path: Path) -> None:
    run = copy_of(stopped_run, tmp_path)
    (run / "config.json").write_text(text)
    with pytest.raises(CnnlabError, match=r"config\.json"):
        read_config(run)
    done = run_cnnlab("report", str(run))
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_resume_on_changed_data_is_refused_saying_what_changed(tmp_path: Path) -> None:
    from PIL import Image

    data = tmp_path / "data"
    write_dataset(data, n_train=64, n_test=32, gz=False)
    config = TrainConfig(
        dataset="idx",
        data_dir=str(data),
        epochs=1,
        batch_size=16,
        lr=0.1,
        device="cpu",
        out_dir=str(tmp_path / "run"),
        quiet=True,
    )
    run = train(config).run_dir
    assert read_config(run)["data"]["train"] == 64
    labels = data / "train-labels-idx1-ubyte"
    original = labels.read_bytes()
    labels.write_bytes(original[:-1] + bytes([(original[-1] + 1) % 10]))  # one label changed
    with pytest.raises(CnnlabError, match="the same sizes and classes, other pixels or labels"):
        train(TrainConfig(resume=str(run), epochs=2, quiet=True))
    labels.write_bytes(original)
    assert len(train(TrainConfig(resume=str(run), epochs=2, quiet=True)).history) == 2
    # a folder that gained a class: said, not a dump of the state dict
    pictures = tmp_path / "pictures"
    for name in ("a", "b"):
        (pictures / name).mkdir(parents=True)
        for i in range(5):
            Image.new("L", (8, 8), 40 * i).save(pictures / name / f"{i}.png")
    folder_config = TrainConfig(
        dataset=f"folder:{pictures}",
        epochs=1,
        batch_size=4,
        lr=0.1,
        device="cpu",
        out_dir=str(tmp_path / "folder-run"),
        quiet=True,
    )
    folder_run = train(folder_config).run_dir
    (pictures / "c").mkdir()
    for i in range(5):
        Image.new("L", (8, 8), 30 * i).save(pictures / "c" / f"{i}.png")
    with pytest.raises(CnnlabError) as refused:
        train(TrainConfig(resume=str(folder_run), epochs=2, quiet=True))
    assert "the data changed since" in str(refused.value)
    assert "classes ['a', 'b'] -> ['a', 'b', 'c']" in str(refused.value)
