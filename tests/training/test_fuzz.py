"""Hostile files: every edit of a checkpoint's metadata, a model.json, a config or a
``--model-options`` string ends in success or a CnnlabError with a message, never in
another exception."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model, parse_options
from cnnlab.rundir import CHECKPOINT
from cnnlab.training import TrainConfig
from cnnlab.training.checkpoint import TrainState, _digest, load_checkpoint, save_checkpoint
from cnnlab.training.distributed import World
from cnnlab.training.launch import prepare_run_dir

# Subnormal floats are left out: training on a CPU flushes them to zero for the whole
# process (see cnnlab.device), and hypothesis refuses to generate them then.
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_subnormal=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def a_checkpoint(directory: Path) -> None:
    torch.manual_seed(0)
    model = create_model("lenet")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(2, 1, 28, 28)).sum().backward()
    optimizer.step()
    state = TrainState(
        epoch=1,
        batch=3,
        step=10,
        seen=48,
        history=[{"type": "epoch", "epoch": 1, "test_acc": 0.5}],
        points=[{"x": 0.5, "train_loss": 2.0, "train_acc": 0.2}],
    )
    save_checkpoint(directory, model, optimizer, state, TrainConfig(momentum=0.9).to_dict())


def rewrite(directory: Path, edit: Any, fresh_digest: bool) -> None:
    """Apply ``edit`` to the checkpoint's metadata; with ``fresh_digest``, as someone who
    knows the format would, recomputing its SHA-256."""
    blob = (directory / CHECKPOINT).read_bytes()
    tensors = load_safetensors(blob)
    header = json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])
    meta = json.loads(header["__metadata__"]["cnnlab"])
    edit(meta)
    if fresh_digest:
        meta["digest"] = _digest(tensors, meta)
    out = save_safetensors(tensors, metadata={"cnnlab": json.dumps(meta)})
    (directory / CHECKPOINT).write_bytes(out)


def ends_well(directory: Path) -> None:
    model = create_model("lenet")
    try:
        load_checkpoint(directory, model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
        prepare_run_dir(TrainConfig(resume=str(directory)), World(), {"resume"})[3].release()  # type: ignore[union-attr]
    except CnnlabError as e:
        assert str(e)


KEYS = [
    "format",
    "model",
    "config",
    "epoch",
    "batch",
    "step",
    "seen",
    "train_seconds",
    "points",
    "history",
    "param_groups",
    "scheduler",
    "optim_scalars",
    "rng_numpy",
    "rng_python",
]


@FUZZ
@given(key=st.sampled_from(KEYS), value=JSON, delete=st.booleans(), fresh=st.booleans())
def test_edited_checkpoint_metadata(
    tmp_path_factory: Any, key: str, value: Any, delete: bool, fresh: bool
) -> None:
    directory = tmp_path_factory.mktemp("ck")
    a_checkpoint(directory)

    def edit(meta: dict[str, Any]) -> None:
        if delete:
            meta.pop(key, None)
        else:
            meta[key] = value

    rewrite(directory, edit, fresh)
    ends_well(directory)


@FUZZ
@given(
    field=st.sampled_from(
        [
            "epochs",
            "lr",
            "model",
            "batch_size",
            "optimizer",
            "model_options",
            "augment",
            "keep",
            "seed",
        ]
    ),
    value=JSON,
)
def test_edited_checkpoint_config(tmp_path_factory: Any, field: str, value: Any) -> None:
    directory = tmp_path_factory.mktemp("ck")
    a_checkpoint(directory)
    rewrite(directory, lambda meta: meta["config"].__setitem__(field, value), True)
    ends_well(directory)


@FUZZ
@given(
    values=st.dictionaries(
        st.sampled_from(
            [
                "lr",
                "epochs",
                "tta",
                "model",
                "recipe",
                "model_options",
                "val_size",
                "early_stop",
                "keep",
                "augment",
                "device",
            ]
        ),
        JSON,
        max_size=4,
    )
)
def test_config_values(values: dict[str, Any]) -> None:
    try:
        config = TrainConfig.from_dict(values)
        parse_options(config.model, config.model_options)  # what the trainer does with them
    except CnnlabError as e:
        assert str(e)


@FUZZ
@given(text=st.text(alphabet="kernelchansdbtm_=,0123456789 .-", max_size=40))
def test_model_options_strings(text: str) -> None:
    try:
        parse_options("lenet", text)
    except CnnlabError as e:
        assert str(e)


def test_the_untouched_checkpoint_loads(tmp_path: Path) -> None:
    a_checkpoint(tmp_path)
    model = create_model("lenet")
    state = load_checkpoint(
        tmp_path, model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    )
    assert (state.epoch, state.step) == (1, 10)


def test_the_probes_of_issue_21(tmp_path: Path) -> None:
    """Edited metadata is caught by the digest; with a digest made to fit, by the checks."""
    import pytest

    from cnnlab.errors import CheckpointError

    model = create_model("lenet")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for edit, fresh, message in [
        (lambda m: m.__setitem__("epoch", "abc"), False, "the contents do not match"),
        (lambda m: m.__setitem__("epoch", "abc"), True, "epoch must be a non-negative integer"),
        (lambda m: m.pop("history"), True, "history must be a list of rows"),
        (lambda m: m.__setitem__("epoch", 10**12), True, "do not describe one run"),
        (lambda m: m.__setitem__("step", -1), True, "step must be a non-negative integer"),
        (lambda m: m.__setitem__("cfg", m.pop("config")), True, "config must be the run's"),
    ]:
        a_checkpoint(tmp_path)
        rewrite(tmp_path, edit, fresh)
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(tmp_path, model, optimizer)


@FUZZ
@given(
    key=st.sampled_from(
        ["model", "model_options", "classes", "preprocessing", "format", "tta", "dataset"]
    ),
    value=JSON,
)
def test_edited_model_json(tmp_path_factory: Any, key: str, value: Any) -> None:
    from cnnlab.rundir import load_model, save_model

    directory = tmp_path_factory.mktemp("run")
    save_model(
        directory,
        create_model("lenet"),
        {
            "model": "lenet",
            "model_options": {"num_classes": 10},
            "dataset": "fashion-mnist",
            "classes": list("abcdefghij"),
            "tta": False,
            "preprocessing": {"input_shape": [1, 28, 28]},
        },
    )
    meta = json.loads((directory / "model.json").read_text())
    meta[key] = value
    (directory / "model.json").write_text(json.dumps(meta))
    try:
        load_model(directory)
    except CnnlabError as e:
        assert str(e)


SWEEP_KEYS = st.sampled_from(
    ["base", "run", "grid", "name", "lr", "epochs", "model", "model_options", "resume", "x"]
)


@FUZZ
@given(
    data=st.dictionaries(
        SWEEP_KEYS,
        st.recursive(
            JSON,
            lambda inner: st.lists(st.dictionaries(SWEEP_KEYS, inner, max_size=3), max_size=3),
            max_leaves=8,
        ),
        max_size=3,
    )
)
def test_sweep_files(data: dict[str, Any]) -> None:
    """What a sweep file's TOML parses to, whatever it holds (tomllib parses the text)."""
    from unittest import mock

    from cnnlab import sweep

    with mock.patch.object(sweep, "load_toml", return_value=data):
        try:
            sweep.load_sweep(Path("sweep.toml"))
        except CnnlabError as e:
            assert str(e)
