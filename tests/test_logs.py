"""Where output goes: escaped names, notebooks recognised by what they can show."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.data import datasets as ds
from cnnlab.logs import in_notebook, shown


def test_shown_escapes_control_characters() -> None:
    assert shown("coat\x1b[2J\n") == "coat\\x1b[2J\\x0a"


@pytest.mark.e2e
def test_a_subclass_of_the_kernel_shell_is_a_notebook(
    monkeypatch: pytest.MonkeyPatch,
    displayed: list[bytes],
    tmp_path: Path,
    tiny_dataset: tuple[ds.Dataset, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Colab's shell (google.colab._shell.Shell) and Spyder's subclass ipykernel's."""
    IPython = pytest.importorskip("IPython")
    zmqshell = pytest.importorskip("ipykernel.zmqshell")
    from cnnlab.compat import d2l
    from cnnlab.training import TrainConfig, train

    class Shell(zmqshell.ZMQInteractiveShell):  # type: ignore[misc]
        pass

    assert not in_notebook()  # pytest is no notebook
    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell.__new__(Shell))
    assert in_notebook()
    _, directory = tiny_dataset
    config = TrainConfig(
        dataset="tiny",
        data_dir=str(directory),
        epochs=2,
        batch_size=32,
        device="cpu",
        out_dir=str(tmp_path / "run"),
    )
    train(config)
    assert len(displayed) >= 2 and all(png[:4] == b"\x89PNG" for png in displayed)
    monkeypatch.chdir(tmp_path)
    animator = d2l.Animator(xlabel="epoch", legend=["loss"])
    animator.add(1, [0.5])
    assert not (tmp_path / "animator.png").exists()  # shown, not written
    err = capsys.readouterr().err
    assert "the figure is in" not in err and "<Figure" not in err


def test_a_terminal_ipython_is_not_a_notebook(monkeypatch: pytest.MonkeyPatch) -> None:
    IPython = pytest.importorskip("IPython")
    from IPython.terminal.interactiveshell import TerminalInteractiveShell

    monkeypatch.setattr(
        IPython, "get_ipython", lambda: TerminalInteractiveShell.__new__(TerminalInteractiveShell)
    )
    assert not in_notebook()
