"""Which network a CPU run trains through (training.cpu_path): the fused blocks where they
are faster or forced, the layers otherwise; a resumed run keeps its path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.accel.cpu import FusedBlock, FusedNorm, NormFunction
from tests.training.runs import four_batch_run, fresh_cache, norm_block_model, slow_down

pytestmark = pytest.mark.e2e  # trains runs to their end, or starts processes

__all__ = ["fresh_cache"]  # a fixture, used by name


def test_training_on_a_cpu_runs_the_fused_blocks_and_no_fast_the_eager_layers(
    tmp_path: Path,
) -> None:
    from cnnlab.training.control import StopOnSignal

    fast, eager = four_batch_run(tmp_path / "fast"), four_batch_run(tmp_path / "eager", fast=False)
    assert [type(m) for m in fast.forward_net][:2] == [FusedBlock, FusedBlock]
    assert not any(isinstance(m, FusedBlock) for m in eager.forward_net.modules())
    for run in (fast, eager):
        run.train_epoch(StopOnSignal())
    # the same function: the two runs' weights after 4 steps agree to float32 rounding
    for a, b in zip(fast.model.parameters(), eager.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert not all(
        torch.equal(a, b)
        for a, b in zip(fast.model.parameters(), eager.model.parameters(), strict=True)
    )


def test_the_norm_kernel_trains_every_epoch_after_evaluating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnlab.training.control import StopOnSignal

    calls = []
    apply = NormFunction.apply
    monkeypatch.setattr(NormFunction, "apply", lambda *a: calls.append(1) or apply(*a))
    model = norm_block_model()
    run = four_batch_run(tmp_path / "run", model, lr=1e-3)
    assert isinstance(run.forward_net[1], FusedNorm)
    for epoch in range(2):
        run.train_epoch(StopOnSignal())
        assert len(calls) == 4 * (epoch + 1)  # four batches an epoch, each by the kernel
        run.evaluate(run.test_batches)  # puts the model in eval mode
        assert len(calls) == 4 * (epoch + 1)  # evaluating runs the layers
        run.state.epoch, run.state.batch = epoch + 1, 0


def test_a_slower_eager_step_is_measured_and_the_fused_kernels_chosen(
    tmp_path: Path, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_down(monkeypatch, nn.Conv2d, 0.02)  # the eager layers' convolutions only
    run = four_batch_run(tmp_path / "run", fast=None)
    assert [type(m) for m in run.forward_net][:2] == [FusedBlock, FusedBlock]
    assert run.cpu_path["path"] == "fused"


@pytest.mark.parametrize("earlier", ["eager", "fused"])
def test_a_resumed_run_keeps_the_path_its_config_records_without_measuring(
    earlier: str, tmp_path: Path, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bit-identical resume needs the same path as the run it continues, whatever a new
    measurement would say."""
    import json

    from cnnlab.accel import choice

    monkeypatch.setattr(choice, "_measure", lambda *a: pytest.fail("measured"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(
        json.dumps({"environment": {"cpu_path": {"path": earlier, "why": "measured"}}})
    )
    run = four_batch_run(run_dir, fast=None)
    fused = any(isinstance(m, FusedBlock) for m in run.forward_net.modules())
    assert fused == (earlier == "fused")
    assert run.cpu_path == {"path": earlier, "why": "this run's earlier choice"}


def test_fast_forces_the_kernels_and_no_fast_the_layers_without_measuring(
    tmp_path: Path, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnlab.accel import choice

    monkeypatch.setattr(choice, "_measure", lambda *a: pytest.fail("measured"))
    slow_down(monkeypatch, FusedBlock, 0.01)
    forced = four_batch_run(tmp_path / "fast", fast=True)
    assert isinstance(forced.forward_net[0], FusedBlock)
    assert forced.cpu_path == {"path": "fused", "why": "--fast"}
    eager = four_batch_run(tmp_path / "eager", fast=False)
    assert not any(isinstance(m, FusedBlock) for m in eager.forward_net.modules())
