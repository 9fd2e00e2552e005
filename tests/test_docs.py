"""The README and docs/ tell the truth: every short command they show (the calculators,
the demos, the animations, `cnnlab data status`) runs as written, in a fresh directory, and
where a page shows a command's output after `$ `, the command prints exactly that."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import run_cnnlab

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
