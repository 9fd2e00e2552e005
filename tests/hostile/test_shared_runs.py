"""Someone else's run directory runs no code: not a module its model.json names, not a
file it ships with that file's SHA-256, not a file named relative to where it is opened,
not an edited model file on --resume; on every read path. The user's own runs still open
and resume without a flag, from any directory."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from cnnlab.errors import CheckpointError
from cnnlab.models.trust import UntrustedModel, trust_file
from cnnlab.predict import load
from cnnlab.rundir import load_model
from cnnlab.training import TrainConfig, train
from tests.conftest import run_cnnlab, write_dataset

pytestmark = pytest.mark.e2e  # trains runs to their end, or starts processes

# Each hostile file leaves this marker beside itself when it runs.
PAYLOAD = """\
from pathlib import Path
Path(__file__).with_name("PWNED").write_text("ran")
from torch import nn


def net(num_classes=10):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes))
"""
READ_COMMANDS = [
    ("eval",),
    ("predict", "IMAGE"),
    ("report",),
    ("explore",),
    ("export", "--format", "torchscript"),
    ("viz", "curves"),
]


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished one-epoch LeNet run on a tiny IDX dataset: (run, data), to be copied."""
    root = tmp_path_factory.mktemp("shared")
    data = root / "data"
    write_dataset(data, n_train=64, n_test=32)
    config = TrainConfig(
        dataset="idx",
        data_dir=str(data),
        epochs=1,
        batch_size=32,
        device="cpu",
        out_dir=str(root / "run"),
        quiet=True,
    )
    return train(config).run_dir, data


def hostile_copy(shared_run: tuple[Path, Path], tmp_path: Path, **meta: object) -> Path:
    """A copy of the shared run whose model.json says ``meta`` on top of what it said."""
    source, _ = shared_run
    run = tmp_path / "their-run"
    run.mkdir()
    for f in source.iterdir():
        (run / f.name).write_bytes(f.read_bytes())
    sidecar = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps({**sidecar, **meta}))
    return run


def command(words: tuple[str, ...], run: Path, tmp_path: Path) -> list[str]:
    image = tmp_path / "image.png"
    if not image.exists():
        from PIL import Image

        Image.new("L", (28, 28)).save(image)
    name, *rest = words
    if name == "viz":
        return ["viz", rest[0], str(run)]
    return [name, str(run), *[str(image) if w == "IMAGE" else w for w in rest]]


@pytest.mark.parametrize("words", READ_COMMANDS, ids=lambda w: w[0])
def test_a_model_json_naming_os_system_runs_nothing_on_any_read_path(
    words: tuple[str, ...], shared_run: tuple[Path, Path], tmp_path: Path
) -> None:
    marker = tmp_path / "PWNED"
    run = hostile_copy(
        shared_run, tmp_path, model="os:system", model_options={"command": f"touch {marker}"}
    )
    done = run_cnnlab(*command(words, run, tmp_path), cwd=tmp_path)
    print(done.stderr)
    assert done.returncode == 1
    assert not marker.exists()
    assert len(done.stderr.strip().splitlines()) == 1
    assert "model 'os:system' names code, but no model_file records which file" in done.stderr


@pytest.mark.parametrize("name", ["os:system", "subprocess:getoutput", "json:loads"])
def test_a_module_named_by_a_run_is_not_imported(
    name: str, shared_run: tuple[Path, Path], tmp_path: Path
) -> None:
    # even with a model_file record of the module's own file: it is not a file trained with
    import importlib

    module = importlib.import_module(name.partition(":")[0])
    path = Path(module.__file__ or "")
    record = {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    run = hostile_copy(shared_run, tmp_path, model=name, model_file=record)
    with pytest.raises(UntrustedModel, match=r"not trained with on this machine.*--trust-model"):
        load_model(run)


def test_a_shipped_model_file_with_its_hash_runs_only_when_trusted(
    shared_run: tuple[Path, Path], tmp_path: Path
) -> None:
    run = hostile_copy(shared_run, tmp_path)
    (run / "net.py").write_text(PAYLOAD)
    digest = hashlib.sha256(PAYLOAD.encode()).hexdigest()
    sidecar = json.loads((run / "model.json").read_text())
    sidecar.update(model="net.py:net", model_file={"path": str(run / "net.py"), "sha256": digest})
    (run / "model.json").write_text(json.dumps(sidecar))
    for read in (lambda: load_model(run), lambda: load(run)):
        with pytest.raises(UntrustedModel) as refused:
            read()
        assert str(run / "net.py") in str(refused.value)
        assert digest[:12] in str(refused.value) and "--trust-model-file" in str(refused.value)
        assert not (run / "PWNED").exists()
    done = run_cnnlab("eval", str(run), cwd=run)
    assert done.returncode == 1 and "--trust-model-file" in done.stderr
    assert not (run / "PWNED").exists()
    # trusted explicitly: it runs (its weights do not fit this Linear, so it is refused after)
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_model(run, trust_model_file=True)
    assert (run / "PWNED").read_text() == "ran"
    assert digest in json.loads(trust_file().read_text())  # and is remembered


def test_a_model_file_named_relative_to_the_working_directory_is_refused(
    shared_run: tuple[Path, Path], tmp_path: Path
) -> None:
    run = hostile_copy(shared_run, tmp_path)
    (run / "net.py").write_text(PAYLOAD)
    digest = hashlib.sha256(PAYLOAD.encode()).hexdigest()
    sidecar = json.loads((run / "model.json").read_text())
    sidecar.update(model="net.py:net", model_file={"path": "net.py", "sha256": digest})
    (run / "model.json").write_text(json.dumps(sidecar))
    done = run_cnnlab("eval", ".", "--trust-model-file", cwd=run)
    assert done.returncode == 1, done.stderr
    assert "is not an absolute path" in done.stderr
    assert not (run / "PWNED").exists()


def test_own_runs_open_and_resume_from_anywhere_and_an_edited_file_is_refused(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    write_dataset(data, n_train=64, n_test=32)
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    code = PAYLOAD.replace('Path(__file__).with_name("PWNED").write_text("ran")', "")
    (project / "net.py").write_text(code)
    train_words = ["train", "--model", "net.py:net", "--dataset", "idx", "--data-dir", str(data)]
    done = run_cnnlab(
        *train_words, "--epochs", "1", "--batch-size", "32", "--lr", "0.1", "--device", "cpu", "--out-dir",
        str(tmp_path / "run"), "--quiet", cwd=project,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == f"{project / 'net.py'}:net"  # absolute: opens from anywhere
    assert config["model_file"]["sha256"] == hashlib.sha256(code.encode()).hexdigest()
    done = run_cnnlab("eval", str(run), cwd=elsewhere)
    assert done.returncode == 0 and done.stdout.startswith("test acc "), done.stderr
    done = run_cnnlab("train", "--resume", str(run), "--epochs", "2", "--quiet", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    # an edit (ReLU -> Sigmoid would do; any byte does) is refused on resume as on eval
    (project / "net.py").write_text(code + "\n# edited\n")
    for words in (["train", "--resume", str(run), "--epochs", "3"], ["eval", str(run)]):
        done = run_cnnlab(*words, cwd=elsewhere)
        assert done.returncode == 1, done.stderr
        assert f"the model's code {project / 'net.py'} changed since the run" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert json.loads((run / "model.json").read_text())["epochs_trained"] == 2


def train_own_file(tmp_path: Path, code: str) -> None:
    """One epoch of the model in ``code``, written to tmp_path/net.py, into tmp_path/run."""
    data = tmp_path / "data"
    write_dataset(data, n_train=64, n_test=32)
    (tmp_path / "net.py").write_text(code)
    config = TrainConfig(
        model=f"{tmp_path / 'net.py'}:net",
        dataset="idx",
        data_dir=str(data),
        epochs=1,
        batch_size=32,
        lr=0.1,
        device="cpu",
        out_dir=str(tmp_path / "run"),
        quiet=True,
    )
    train(config)


def test_resume_of_someone_elses_run_runs_its_file_only_when_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_own_file(tmp_path, PAYLOAD)
    (tmp_path / "PWNED").unlink()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "another-user"))  # not trusted there
    with pytest.raises(UntrustedModel, match="--trust-model-file"):
        train(TrainConfig(resume=str(tmp_path / "run"), epochs=2, quiet=True))
    assert not (tmp_path / "PWNED").exists()
    result = train(
        TrainConfig(resume=str(tmp_path / "run"), epochs=2, quiet=True, trust_model_file=True)
    )
    assert len(result.history) == 2


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"model_options": {"channels": [100000, 100000]}}, "weights do not fit"),
        ({"model_options": {"dense": [10**9]}}, "weights do not fit"),
        ({"model_options": {"kernel": "5; rm -rf /"}}, "takes a value like 5"),
        ({"model_options": {"__class__": 1}}, "has no option '__class__'"),
        ({"preprocessing": {"input_shape": [1, 100000, 100000]}}, "input_shape must be"),
        ({"classes": ["x"] * 1_000_001}, "classes must be a list of 1 to 100000"),
        ({"model": "lenet", "model_options": [1]}, "model_options must be a table"),
    ],
)
def test_huge_or_odd_values_in_model_json_are_refused_before_any_allocation(
    meta: dict[str, object], message: str, shared_run: tuple[Path, Path], tmp_path: Path
) -> None:
    run = hostile_copy(shared_run, tmp_path, **meta)
    with pytest.raises(CheckpointError, match=message):
        load_model(run)


def test_a_model_file_runs_once_per_process_however_often_it_is_named(tmp_path: Path) -> None:
    counted = PAYLOAD.replace(
        'Path(__file__).with_name("PWNED").write_text("ran")',
        'open(Path(__file__).with_name("runs.txt"), "a").write("x")',
    )
    train_own_file(tmp_path, counted)
    train(TrainConfig(resume=str(tmp_path / "run"), epochs=2, quiet=True))
    load_model(tmp_path / "run")
    assert (tmp_path / "runs.txt").read_text() == "x"  # trained, resumed, loaded: run once
