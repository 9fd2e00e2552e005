"""The README and docs/ tell the truth: every short command they show (the calculators,
the demos, the animations, `cnnlab data status`) runs as written, in a fresh directory, and
where a page shows a command's output after `$ `, the command prints exactly that."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import needs_real_data, run_cnnlab

pytestmark = pytest.mark.e2e  # trains runs to their end, or starts processes

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHORT = ("shape", "summary", "models", "demo", "animate", "data status", "--help")  # seconds each


def shown_commands() -> list[tuple[str, str, str | None]]:
    """(page, command line, the output shown after it or None) for every short
    ``cnnlab`` command in a code block of the README or docs/."""
    found = []
    for page in PAGES:
        for block in re.findall(r"^```[a-z]*\n(.*?)^```", page.read_text(), re.M | re.S):
            lines = block.splitlines()
            for i, line in enumerate(lines):
                prompt = line.startswith("$ ")
                command = line.removeprefix("$ ")
                if not command.startswith("cnnlab ") or "[" in command:  # [options] is a synopsis
                    continue
                if not command.removeprefix("cnnlab ").startswith(SHORT):
                    continue
                output = None
                if prompt:
                    rest = [x for x in lines[i + 1 :]]
                    ends = [k for k, x in enumerate(rest) if x.startswith("$ ")]
                    output = "\n".join(rest[: ends[0] if ends else len(rest)]) + "\n"
                found.append((page.name, command, output))
    return found


COMMANDS = shown_commands()


def test_the_pages_show_short_commands() -> None:
    assert len(COMMANDS) >= 10, COMMANDS  # the extraction itself works


@pytest.mark.parametrize(
    ("page", "command", "output"), COMMANDS, ids=[f"{p}: {c}" for p, c, _ in COMMANDS]
)
def test_a_shown_command_runs_as_shown(
    page: str, command: str, output: str | None, tmp_path: Path
) -> None:
    argv = shlex.split(command, comments=True)
    done = run_cnnlab(*argv[1:], cwd=tmp_path, env={"COLUMNS": "100"})
    assert done.returncode == 0, f"{page}: `{command}` failed:\n{done.stderr}"
    if output is not None:
        assert done.stdout == output, f"{page}: `{command}` printed something else"


def tour() -> list[str]:
    """The README's tour, line by line (comments dropped)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## A tour\n\n```bash\n(.*?)```", text, re.S)
    assert block is not None
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


@pytest.mark.slow
@needs_real_data
def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    """Every line of the tour, in order, in a fresh directory: `predict` finds the file
    `data sample` wrote. Two substitutions keep it to minutes: trainings run 1 epoch, and
    the tour's example run directory is the one the first `cnnlab train` made."""
    made: str | None = None
    for command in tour():
        argv = shlex.split(command)[1:]
        if argv[0] == "train" and "--epochs" not in argv:
            argv += ["--epochs", "1"]
        if made is not None:
            argv = [made if a == "runs/lenet-20261122-110721" else a for a in argv]
        done = run_cnnlab(*argv, cwd=tmp_path, timeout=600)
        assert done.returncode == 0, f"`{command}` failed:\n{done.stderr}"
        if argv[0] == "train" and made is None:
            made = str(next((tmp_path / "runs").iterdir()))
        if argv[:2] == ["data", "sample"]:
            assert "(Ankle boot)" in done.stdout, done.stdout
        if argv[0] == "predict":  # one epoch of LeNet need not be right: that it ran is the point
            assert done.stdout.startswith("boot.png: ") and "Ankle boot" in done.stdout
