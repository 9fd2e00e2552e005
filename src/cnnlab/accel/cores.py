"""How busy this process's CPU cores are with other programs' work, and a thread count
that follows it.

A learner's laptop is rarely idle. With torch's (and the fused kernels') threads at one
per core and another program holding a core, every parallel region waits at its end for
the thread that the other program pushed off its core: on 2 cores beside one busy
process, a plain PyTorch loop trained 8,920 examples/sec on two threads and 17,533 on one
(benchmarks/cpu_busy.py's loop, 2026-12-07). So a run measures, every
:data:`WINDOW_S`, how much CPU time the cores it may run on spent on work other than its
own (Linux's per-CPU counters in ``/proc/stat``, less this process's CPU time), and trains
on as many threads as cores are left free, never more than it started with.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from tqdm import tqdm

from cnnlab.logs import log

WINDOW_S = 0.25  # a measurement's length; after the first, two alike change the count
STAT = Path("/proc/stat")
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user, nice, system, irq, softirq, steal (not idle, iowait)


def allowed_cpus() -> set[int]:
    """The CPUs this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


def busy_seconds(cpus: set[int]) -> float | None:
    """Seconds the ``cpus`` have spent on any work since boot, or None where the system
    does not say (no ``/proc/stat``: macOS, Windows)."""
    try:
        lines = STAT.read_text().splitlines()
        ticks = 0
        for line in lines:
            name, *values = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                ticks += sum(int(values[i]) for i in BUSY_FIELDS if i < len(values))
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class OtherWork:
    """The cores' time spent on other processes' work since the last :meth:`cores` (or
    since this was made), in cores: 1.0 is one core kept busy by others."""

    def __init__(self, cpus: set[int] | None = None) -> None:
        self.cpus = allowed_cpus() if cpus is None else cpus
        self.start = self._sample()

    @staticmethod
    def _now() -> tuple[float, float]:
        """Now, and the CPU seconds of this process and its finished children (a compiler
        building the kernels is this run's work too)."""
        t = os.times()
        return time.monotonic(), t.user + t.system + t.children_user + t.children_system

    def _sample(self) -> tuple[float, float, float | None]:
        wall, own = self._now()
        return wall, own, busy_seconds(self.cpus)

    @property
    def readable(self) -> bool:
        """Whether the system says how busy the cores are (``/proc/stat``)."""
        return self.start[2] is not None

    def cores(self) -> float | None:
        """Other processes' busy cores over the time since the last call; None where the
        system does not say or no time has passed."""
        (wall0, own0, busy0), (wall, own, busy) = self.start, self._sample()
        self.start = (wall, own, busy)
        if busy0 is None or busy is None or wall <= wall0:
            return None
        return max(0.0, (busy - busy0 - (own - own0)) / (wall - wall0))


class FreeCores:
    """The thread count of torch and the fused kernels, following the cores other programs
    leave free: :meth:`tick` (once per training step) measures every :data:`WINDOW_S` and
    sets the count the window found; after the first window, only once two windows in a
    row agree (the first covers the run's setup: a run started beside other work drops its
    surplus threads at once). Never more threads than torch had when this was made;
    ``pinned`` keeps that count whatever the load (the same thread count gives the same
    bits; another count can change the last bits of sums)."""

    def __init__(self, pinned: bool = False, quiet: bool = False) -> None:
        self.most = torch.get_num_threads()
        self.other = OtherWork()
        self.active = not pinned and self.most > 1 and self.other.readable
        self.quiet = quiet
        self.cpus = len(self.other.cpus)
        self.due = time.monotonic() + WINDOW_S
        self.proposed: int | None = None

    @classmethod
    def on(cls, device: torch.device, threads: int = 0, quiet: bool = True) -> FreeCores:
        """For work on ``device``: ``threads`` > 0 sets and pins torch's count (the caller's
        ``numerics()`` puts it back afterwards), 0 follows the free cores. Off the CPU,
        nothing changes."""
        if threads and device.type == "cpu":
            torch.set_num_threads(threads)
        return cls(bool(threads) or device.type != "cpu", quiet)

    def tick(self) -> None:
        now = time.monotonic()
        if not self.active or now < self.due:
            return
        self.due = now + WINDOW_S
        busy = self.other.cores()
        if busy is None:
            return
        wanted = max(1, min(self.most, round(self.cpus - busy)))
        if wanted != torch.get_num_threads() and self.proposed in (None, wanted):
            torch.set_num_threads(wanted)
            if not self.quiet:
                with tqdm.external_write_mode():  # above a progress bar, not through it
                    log.info(
                        "%.1f of %d cores busy with other work: training on %d thread%s",
                        busy,
                        self.cpus,
                        wanted,
                        "" if wanted == 1 else "s",
                    )
        self.proposed = wanted
