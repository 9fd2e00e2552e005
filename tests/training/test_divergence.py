"""A run that blew up: the limit it is held to and what it is told to change."""

from __future__ import annotations

import math
from pathlib import Path

from cnnlab.training.divergence import advice, diverged, loss_limit


def test_divergence_advice_comes_from_the_values_that_diverged() -> None:
    tip = advice(0.5, 4.0)
    assert "--lr 0.05" in tip and "--weight-decay 4 times --lr is 2" in tip
    assert "weight decay" not in advice(0.5, 0.0)
    tiny = advice(1e-300, 0.0)
    assert "inf" not in tiny and "nan" not in tiny and "--lr 1e-300" in tiny


def test_the_message_names_where_and_what_is_left(tmp_path: Path) -> None:
    error = str(diverged("averages 99.0", (2, 7), 10, 0.9, 0.0, tmp_path))
    assert "the loss averages 99.0 at epoch 2, step 7 (lr 0.9;" in error
    assert "guesses scores 2.30" in error and "--lr 0.09" in error
    assert "No checkpoint had been written yet." in error
    (tmp_path / "checkpoint.safetensors").write_bytes(b"")
    assert f"The last good checkpoint remains in {tmp_path}." in str(
        diverged("is not a finite number", (1, 1), 10, 0.9, 0.0, tmp_path)
    )


def test_the_limit_is_ten_times_a_uniform_guess() -> None:
    assert loss_limit(10) == 10 * math.log(10)
