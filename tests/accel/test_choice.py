"""Which of two networks trains faster here (accel.choice): measured the first time a
model's shapes train, then reused from the cache until the CPU, thread count, torch, the
kernels' build or the shapes change; an answer measured beside other work, or with the
two paths' times overlapping, is provisional and measured again. Through a Run, as cnnlab
train chooses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.accel import choice
from cnnlab.accel.cpu import FusedBlock
from tests.training.runs import four_batch_run, fresh_cache, norm_block_model, slow_down

pytestmark = pytest.mark.e2e  # trains runs to their end, or starts processes

__all__ = ["fresh_cache"]  # a fixture, used by name


class Load:
    """Other programs' busy cores while a choice is measured, as the test says."""

    def __init__(self, busy: float) -> None:
        self.busy = busy

    def cores(self) -> float:
        return self.busy


def machine(monkeypatch: pytest.MonkeyPatch, busy: float) -> None:
    monkeypatch.setattr(choice, "OtherWork", lambda: Load(busy))


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
    machine(monkeypatch, 0.0)
    slow_down(monkeypatch, nn.Conv2d, 0.02)  # the eager layers clearly slower: no overlap
    first = four_batch_run(tmp_path / "first", fast=None)
    assert not first.cpu_path["measured_before"] and not first.cpu_path["provisional"]
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
    machine(monkeypatch, 0.0)
    slow_down(monkeypatch, nn.Conv2d, 0.02)
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


def test_a_choice_measured_beside_other_work_is_replaced_by_the_next_idle_run(
    tmp_path: Path, fresh_cache: Path
) -> None:
    with pytest.MonkeyPatch.context() as busy:  # a competing process holds a core and
        machine(busy, 1.0)  # the fused kernels' threads wait for it
        slow_down(busy, FusedBlock, 0.05)
        first = four_batch_run(tmp_path / "first", fast=None)
    assert first.cpu_path["path"] == "eager"
    assert first.cpu_path["provisional"] and first.cpu_path["busy_cores"] == 1.0
    with pytest.MonkeyPatch.context() as idle:  # idle, where the fused path is faster
        machine(idle, 0.0)
        slow_down(idle, nn.Conv2d, 0.05)
        second = four_batch_run(tmp_path / "second", fast=None)
        third = four_batch_run(tmp_path / "third", fast=None)
    assert second.cpu_path["path"] == "fused" and not second.cpu_path["measured_before"]
    assert not second.cpu_path["provisional"] and second.cpu_path["busy_cores"] == 0.0
    assert third.cpu_path["path"] == "fused" and third.cpu_path["measured_before"]


def test_remeasure_times_again_though_an_answer_is_remembered(
    tmp_path: Path, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine(monkeypatch, 0.0)
    slow_down(monkeypatch, nn.Conv2d, 0.02)
    four_batch_run(tmp_path / "first", fast=None)
    measured = []
    real = choice._measure
    monkeypatch.setattr(choice, "_measure", lambda *a: measured.append(1) or real(*a))
    again = four_batch_run(tmp_path / "again", fast=None, remeasure=True)
    assert measured == [1] and not again.cpu_path["measured_before"]
    cached = four_batch_run(tmp_path / "cached", fast=None)
    assert measured == [1] and cached.cpu_path["measured_before"]


@pytest.mark.parametrize(
    ("eager", "busy", "provisional"),
    [
        ([3.5, 4.0, 5.0], 0.0, False),  # apart, idle
        ([3.5, 4.0, 5.0], None, False),  # apart, the system does not say
        ([2.5, 3.0, 4.0], 0.0, True),  # eager's fastest round beats fused's slowest
        ([3.5, 4.0, 5.0], 0.3, True),  # other work took a quarter core or more
    ],
)
def test_a_measurement_is_provisional_when_busy_or_its_rounds_overlap(
    eager: list[float], busy: float | None, provisional: bool
) -> None:
    entry = choice._summary({"fused": [1.0, 2.0, 3.0], "eager": eager}, busy)
    assert entry["provisional"] is provisional
    assert entry["ms"] == {"fused": 2.0, "eager": eager[1]}
    assert entry["spread"] == {"fused": [1.0, 3.0], "eager": [eager[0], eager[2]]}


def test_a_provisional_choice_measured_again_on_a_busy_machine_stands(
    tmp_path: Path, fresh_cache: Path
) -> None:
    with pytest.MonkeyPatch.context() as busy:
        machine(busy, 1.0)
        slow_down(busy, FusedBlock, 0.05)
        first = four_batch_run(tmp_path / "first", fast=None)
    with pytest.MonkeyPatch.context() as still_busy:  # the other path now looks faster
        machine(still_busy, 1.0)
        slow_down(still_busy, nn.Conv2d, 0.05)
        second = four_batch_run(tmp_path / "second", fast=None)
    assert first.cpu_path["path"] == second.cpu_path["path"] == "eager"  # no flip
    assert second.cpu_path["provisional"] and second.cpu_path["measured_before"]


def test_rounds_that_overlap_again_on_an_idle_machine_settle_the_choice(
    tmp_path: Path, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two paths as fast as each other are not measured again on every run."""
    machine(monkeypatch, 0.0)
    measured = []
    overlapping = {"fused": [2.0, 3.0, 4.0], "eager": [2.5, 3.5, 4.5]}
    monkeypatch.setattr(choice, "_measure", lambda *a: measured.append(1) or overlapping)
    first = four_batch_run(tmp_path / "first", fast=None)
    assert first.cpu_path["path"] == "fused" and first.cpu_path["provisional"]
    second = four_batch_run(tmp_path / "second", fast=None)  # measured again: overlap again
    assert measured == [1, 1] and not second.cpu_path["provisional"]
    third = four_batch_run(tmp_path / "third", fast=None)
    assert measured == [1, 1] and third.cpu_path["measured_before"]
    assert third.cpu_path["path"] == "fused" and not third.cpu_path["provisional"]
