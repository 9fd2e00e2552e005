"""The training checkpoint: everything --resume needs comes back as it was saved, and a
damaged or foreign file is refused with what is wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from cnnlab.errors import CheckpointError
from cnnlab.models import create_model
from cnnlab.rundir import CHECKPOINT
from cnnlab.training.checkpoint import TrainState, load_checkpoint, save_checkpoint


def saved(tmp_path: Path, model_name: str = "lenet", **options: object) -> Path:
    model = create_model(model_name, **options)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    save_checkpoint(tmp_path, model, optimizer, TrainState(), {"model": model_name})
    return tmp_path


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    """Weights, optimizer state, the position in the run, the epoch's sums and the
    metrics all come back as they were saved."""
    torch.manual_seed(0)
    model = create_model("lenet")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(4, 1, 28, 28)).sum().backward()
    optimizer.step()  # momentum buffers now exist
    state = TrainState(
        epoch=3,
        batch=5,
        step=42,
        seen=80,
        loss_sum=torch.tensor(12.5),
        correct=torch.tensor(61),
        train_seconds=9.5,
        points=[{"x": 0.2, "train_loss": 2.0, "train_acc": 0.3}],
        history=[{"type": "epoch", "epoch": e, "test_acc": 0.5} for e in (1, 2, 3)],
    )
    save_checkpoint(tmp_path, model, optimizer, state, {"model": "lenet"})
    torch.manual_seed(1)
    restored = create_model("lenet")
    restored_optimizer = torch.optim.SGD(restored.parameters(), lr=0.1, momentum=0.9)
    loaded = load_checkpoint(tmp_path, restored, restored_optimizer)
    assert (loaded.epoch, loaded.batch, loaded.step, loaded.seen) == (3, 5, 42, 80)
    assert loaded.loss_sum.item() == 12.5 and loaded.correct.item() == 61
    assert loaded.train_seconds == 9.5
    assert loaded.points == state.points and loaded.history == state.history
    for a, b in zip(model.state_dict().values(), restored.state_dict().values(), strict=True):
        assert a.equal(b)
    for p, q in zip(model.parameters(), restored.parameters(), strict=True):
        assert optimizer.state[p]["momentum_buffer"].equal(
            restored_optimizer.state[q]["momentum_buffer"]
        )


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[: len(b) // 2], "damaged or truncated"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "the file was changed after it was written"),
        (lambda b: b"\x00" * 8 + b"garbage", "damaged or truncated"),
        (lambda b: os.urandom(300), "damaged or truncated"),
    ],
)
def test_damaged_checkpoints_are_refused(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    path = saved(tmp_path) / CHECKPOINT
    path.write_bytes(damage(path.read_bytes()))
    model = create_model("lenet")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path, model, torch.optim.SGD(model.parameters(), lr=0.1))


def test_checkpoint_of_another_model_or_not_a_checkpoint(tmp_path: Path) -> None:
    saved(tmp_path, num_classes=3)
    model = create_model("lenet")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match="the weights do not fit model 'lenet'"):
        load_checkpoint(tmp_path, model, optimizer)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / CHECKPOINT))  # a safetensors file, not ours
    with pytest.raises(CheckpointError, match="not a cnnlab training checkpoint"):
        load_checkpoint(tmp_path, model, optimizer)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        load_checkpoint(tmp_path / "missing", model, optimizer)
