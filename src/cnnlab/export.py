"""A trained model for deployment: ONNX or TorchScript, with its preprocessing written into
the file, and the ONNX file checked against PyTorch in onnxruntime."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from cnnlab.data import Batches
from cnnlab.data.folder import splits_of_run
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.fsutil import atomic_write_bytes
from cnnlab.rundir import data_dir_of, load_model
from cnnlab.training.metrics import EVAL_BATCH

FORMATS = ("onnx", "torchscript")
ONNX_EXTRA = "pip install 'cnnlab[onnx]'"


def describe(meta: dict[str, Any]) -> dict[str, str]:
    """What a deployed model needs to be fed and read, as text metadata."""
    shape = meta["preprocessing"]["input_shape"]
    return {
        "cnnlab_model": meta["model"],
        "classes": json.dumps(meta["classes"]),
        "input": f"float32 (batch, {', '.join(map(str, shape))}): grayscale pixels / 255, "
        f"{meta['preprocessing']['background']}",
        "output": "logits (batch, classes); softmax gives the class probabilities",
        "tta": (
            "average the probabilities of each image and its left-right mirror"
            if meta.get("tta")
            else "none"
        ),
    }


def export(
    run_dir: Path,
    fmt: str,
    out: Path,
    data_dir: str | None = None,
    check_images: int = 256,
    trust: bool = False,
    offline: bool | None = None,
) -> tuple[float, int] | None:
    """Write the model of ``run_dir`` to ``out`` as ``fmt``; for ONNX, return the largest
    difference from PyTorch's logits on the first ``check_images`` test images and how many
    there were (None when onnxruntime is not installed)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    model, meta = load_model(run_dir, trust_model_file=trust)
    shape = meta["preprocessing"]["input_shape"]
    example = torch.zeros(2, *shape)
    # Each format is serialized in memory, then written through the atomic path: a full
    # disk or a kill leaves no partial file at ``out`` (torch's own writers write in place).
    if fmt == "torchscript":
        with quiet_torch():
            traced = torch.jit.trace(model, example)  # type: ignore[no-untyped-call]
            buffer = io.BytesIO()
            extra = {"cnnlab.json": json.dumps(describe(meta))}
            torch.jit.save(traced, buffer, _extra_files=extra)
        atomic_write_bytes(out, buffer.getvalue())
        return None
    try:
        import onnx  # noqa: F401  (the exporter builds its model as onnx protobufs)
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError:
        raise ConfigError(f"ONNX export needs the onnx extra: {ONNX_EXTRA}") from None
    try:
        with quiet_torch():
            program = torch.onnx.export(
                model,
                (example,),
                input_names=["image"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                dynamo=True,
                verbose=False,
            )
    except Exception as e:  # the exporter raises many kinds; say which model failed
        raise CnnlabError(f"ONNX export of {meta['model']} failed: {e}") from e
    assert program is not None
    proto = program.model_proto
    for key, value in describe(meta).items():
        proto.metadata_props.add(key=key, value=value)
    atomic_write_bytes(out, proto.SerializeToString())
    return check_onnx(out, model, meta, data_dir_of(run_dir, data_dir), check_images, offline)


@contextlib.contextmanager
def quiet_torch() -> Iterator[None]:
    """PyTorch's exporters' own notices, which a user cannot act on (deprecations of
    TorchScript, torchvision's ops skipped as not installed), kept off the terminal."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def check_onnx(
    path: Path,
    model: torch.nn.Module,
    meta: dict[str, Any],
    data_dir: str | Path | None,
    count: int,
    offline: bool | None = None,
) -> tuple[float, int] | None:
    """The largest |logit difference| between onnxruntime and PyTorch on test images, and
    how many images it compared."""
    try:
        import onnxruntime
    except ImportError:
        return None
    _, test, _, _ = splits_of_run(meta, data_dir, offline)
    x, _ = next(iter(Batches(test, min(count, EVAL_BATCH))))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (ours,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.inference_mode():
        theirs = model(x).numpy()
    return float(abs(ours - theirs).max()), len(x)
