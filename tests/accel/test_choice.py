"""Which of two networks trains faster here (accel.choice): measured the first time a
model's shapes train, then reused from the cache until the CPU, thread count, torch, the
kernels' build or the shapes change. Through a Run, as cnnlab train chooses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnnlab.accel.cpu import FusedBlock
from tests.training.runs import four_batch_run, fresh_cache, norm_block_model, slow_down

pytestmark = pytest.mark.e2e  # trains runs to their end, or starts processes

__all__ = ["fresh_cache"]  # a fixture, used by name


def test_a_slower_fused_step_is_measured_and_the_eager_layers_chosen(
    tmp_path: Path, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_down(monkeypatch, FusedBlock, 0.05)
    run = four_batch_run(tmp_path / "run", fast=None)
    assert not any(isinstance(m, FusedBlock) for m in run.forward_net.modules())
    assert run.cpu_path["path"] == "eager" and run.cpu_path["why"] == "measured"
    ms = run.cpu_path["ms_per_step"]
    assert ms["fused"] > ms["eager"] + 60  # two blocks, 50 ms each: clear of a busy machine
    assert not run.cpu_path["measured_before"]


def test_measuring_leaves_the_weights_buffers_and_random_state_as_they_were(
    tmp_path: Path, fresh_cache: Path
) -> None:
    model = norm_block_model()
    torch.manual_seed(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    run = four_batch_run(tmp_path / "run", model, fast=None)
    assert run.cpu_path["why"] == "measured"
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_the_measured_choice_is_reused_from_the_cache_without_measuring(
    tmp_path: Path, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnlab.accel import choice

    first = four_batch_run(tmp_path / "first", fast=None)
    assert not first.cpu_path["measured_before"]
    assert (fresh_cache / "kernels" / "choices.json").is_file()
    measured = []
    monkeypatch.setattr(choice, "_measure", lambda *a: measured.append(1) or {})
    second = four_batch_run(tmp_path / "second", fast=None)
    assert measured == [] and second.cpu_path["measured_before"]
    assert second.cpu_path["path"] == first.cpu_path["path"]
    assert second.cpu_path["ms_per_step"] == first.cpu_path["ms_per_step"]


@pytest.mark.parametrize("change", ["cpu", "threads", "torch", "kernels", "batch"])
def test_a_changed_cpu_thread_count_torch_kernel_build_or_shape_measures_again(
    change: str, tmp_path: Path, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnlab.accel import choice

    four_batch_run(tmp_path / "first", fast=None)
    threads = torch.get_num_threads()
    config: dict[str, object] = {}
    if change == "cpu":
        monkeypatch.setattr(choice, "cpu_name", lambda: "Another CPU")
    elif change == "threads":
        torch.set_num_threads(threads + 1)
    elif change == "torch":
        monkeypatch.setattr(torch, "__version__", torch.__version__ + ".other")
    elif change == "kernels":
        monkeypatch.setenv("CNNLAB_CPU_ISA", "portable")
    else:
        config["batch_size"] = 8  # a batch of another shape
    try:
        measured = []
        real = choice._measure
        monkeypatch.setattr(choice, "_measure", lambda *a: measured.append(1) or real(*a))
        run = four_batch_run(tmp_path / "second", fast=None, **config)
    finally:
        torch.set_num_threads(threads)
    assert measured == [1] and not run.cpu_path["measured_before"]
