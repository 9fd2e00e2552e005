"""The cores other programs keep busy (accel.cores), and a thread count that follows them:
fewer threads beside other work, back up when it ends, never above torch's own count,
fixed when pinned."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cnnlab.accel import cores
from cnnlab.accel.cores import FreeCores, OtherWork, busy_seconds

STAT = """cpu  900 0 100 5000 0 0 0 0 0 0
cpu0 300 5 100 2000 70 2 3 10 0 0
cpu1 600 0 0 3000 0 0 0 0 0 0
cpu7 1000 0 0 0 0 0 0 0 0 0
intr 11 0 0
procs_running 2
"""


@pytest.fixture
def two_threads() -> Iterator[None]:
    """torch on 2 threads for the test (under pytest-xdist a worker has 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_busy_seconds_sums_the_allowed_cpus_busy_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stat = tmp_path / "stat"
    stat.write_text(STAT)
    monkeypatch.setattr(cores, "STAT", stat)
    hz = cores.os.sysconf("SC_CLK_TCK")
    # cpu0: user, nice, system, irq, softirq, steal (not idle 2000, not iowait 70)
    assert busy_seconds({0}) == pytest.approx((300 + 5 + 100 + 2 + 3 + 10) / hz)
    assert busy_seconds({0, 1}) == pytest.approx((420 + 600) / hz)
    assert busy_seconds({1, 7}) == pytest.approx(1600 / hz)  # never the total line
    stat.write_text("cpu0 not numbers\n")
    assert busy_seconds({0}) is None
    monkeypatch.setattr(cores, "STAT", tmp_path / "missing")
    assert busy_seconds({0}) is None


class FakeOther:
    """Other programs' busy cores, window by window, as the test says."""

    readable = True

    def __init__(self, loads: list[float | None], cpus: int) -> None:
        self.loads, self.cpus = loads, set(range(cpus))

    def cores(self) -> float | None:
        return self.loads.pop(0)


def governed(
    monkeypatch: pytest.MonkeyPatch, loads: list[float | None], cpus: int = 2, **kw: bool
) -> FreeCores:
    monkeypatch.setattr(cores, "OtherWork", lambda: FakeOther(loads, cpus))
    monkeypatch.setattr(cores, "WINDOW_S", 0.0)  # every tick ends a window
    return FreeCores(quiet=True, **kw)


def test_threads_follow_the_free_cores_first_window_alone_then_two_alike(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[float | None] = [0.9, 0.0, 0.0, 1.2, 0.3, None, 0.3, 3.5, 0.1, 0.0]
    free = governed(monkeypatch, loads)
    seen = []
    for _ in range(len(loads)):
        free.tick()
        seen.append(torch.get_num_threads())
    # 0.9 of 2 cores busy: 1 thread at once (the first window decides alone); 0.0, 0.0:
    # back to 2 at the second alike window; then 1.2 (1 free) and 3.5 (at least 1 thread)
    # each stand alone between windows with 2 free, and no window changes the count
    assert seen == [1, 1, 2, 2, 2, 2, 2, 2, 2, 2]


def test_threads_drop_after_two_busy_windows_and_never_exceed_the_start(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    free = governed(monkeypatch, [0.0, 3.0, 3.0, 0.0, 0.0, 0.0], cpus=4)  # 4 free: still 2
    seen = []
    for _ in range(6):
        free.tick()
        seen.append(torch.get_num_threads())
    assert seen == [2, 2, 1, 1, 2, 2]


def test_pinned_or_single_threads_stay_whatever_the_load(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned = governed(monkeypatch, [2.0, 2.0, 2.0], pinned=True)
    for _ in range(3):
        pinned.tick()
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)
    one = governed(monkeypatch, [0.0, 0.0, 0.0])
    for _ in range(3):
        one.tick()
    assert torch.get_num_threads() == 1


def test_on_pins_the_asked_count_and_leaves_other_devices_alone(two_threads: None) -> None:
    assert not FreeCores.on(torch.device("cpu"), threads=1).active
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)
    assert not FreeCores.on(torch.device("meta")).active
    assert torch.get_num_threads() == 2


@pytest.mark.skipif(busy_seconds({0}) is None, reason="needs Linux's /proc/stat")
@pytest.mark.e2e
def test_a_real_competing_process_is_seen_and_training_drops_to_one_thread(
    two_threads: None,
) -> None:
    cpus = cores.allowed_cpus()
    if len(cpus) > 2:
        pytest.skip("measured on 2 cores: more would leave free ones beside one competitor")
    other = OtherWork()
    free = FreeCores()
    spin = "x = 1.0\nwhile True:\n    x = x * 1.0000001 + 1e-9\n"
    competitor = subprocess.Popen([sys.executable, "-c", spin])
    try:
        deadline = time.monotonic() + 10
        while torch.get_num_threads() == 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # this process idle: what is busy is the competitor's
            free.tick()
        busy = other.cores()
    finally:
        competitor.kill()
        competitor.wait()
    print(f"other programs' cores: {busy}")
    assert busy is not None and busy >= 0.5
    assert torch.get_num_threads() == 1


def test_this_process_own_work_is_not_counted_as_other_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the system's busy time rose by 1.5 s over 1 s, 1.0 of it this process's own
    clock = iter([(0.0, 10.0, 100.0), (1.0, 11.0, 101.5)])
    monkeypatch.setattr(OtherWork, "_sample", lambda self: next(clock))
    other = OtherWork({0, 1})
    assert other.cores() == pytest.approx(0.5)


def test_a_run_with_threads_set_trains_on_that_many_whatever_the_load(
    tmp_path: Path, two_threads: None
) -> None:
    from tests.training.runs import four_batch_run

    run = four_batch_run(tmp_path / "run", threads=1)
    assert torch.get_num_threads() == 1 and not run.cores.active
    torch.set_num_threads(2)
    assert four_batch_run(tmp_path / "free").cores.active == (busy_seconds({0}) is not None)


def test_without_proc_stat_the_thread_count_is_left_alone(
    tmp_path: Path, two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cores, "STAT", tmp_path / "missing")  # macOS, Windows
    free = FreeCores()
    assert not free.other.readable and not free.active
    free.tick()
    assert torch.get_num_threads() == 2
