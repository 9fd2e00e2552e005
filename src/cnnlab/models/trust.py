"""Which code a run directory may run: a registered model, or a model file that this user
trained with on this machine (or explicitly trusts), unchanged since the run recorded it.

Run directories are shared (an instructor hands out runs, a student submits one), so what
a run's files name is never imported as such, as ``torch.load(weights_only=True)`` loads no
code and Hugging Face runs a repository's code only with ``trust_remote_code``. Training
with ``--model PATH.py:FUNC`` (or ``package.module:FUNC``) records the file's SHA-256 in a
per-user list (:func:`trust_file`); a run naming a file whose digest is on that list opens
without a flag, from any directory. Any other file is refused in one line that names it,
its digest and the flag that runs it anyway (``--trust-model-file``,
``cnnlab.load(run, trust_model_file=True)``), which also adds it to the list.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cnnlab import environ
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.fsutil import atomic_write_bytes, exclusive
from cnnlab.logs import log
from cnnlab.models.registry import ModelFactory, file_digest, is_reference, referenced, registered

MAX_MODEL_FILE = 4 << 20  # bytes: a model file is a page of code, not a data file
SHA256 = re.compile(r"[0-9a-f]{64}")


class UntrustedModel(CheckpointError):
    """A run names model code that this user has not trained with and did not trust."""


def trust_file() -> Path:
    """The per-user list of trusted model files: ``$XDG_CONFIG_HOME/cnnlab/trusted-models.json``
    (else ``~/.config/cnnlab/...``), one entry per SHA-256."""
    config = environ.config_home() or Path.home() / ".config"
    return Path(config) / "cnnlab" / "trusted-models.json"


def trusted_digests() -> dict[str, Any]:
    """The trusted SHA-256s, each with the file and reference it was first trusted as."""
    try:
        entries = json.loads(trust_file().read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}  # none yet, or unreadable: nothing is trusted
    return entries if isinstance(entries, dict) else {}


def remember(path: Path, digest: str, reference: str) -> None:
    """Add the model file ``path`` (its content, ``digest``) to the trusted list."""
    where = trust_file()
    if digest in trusted_digests():
        return
    try:
        with exclusive(where.with_name(".trusted-models.lock"), f"waiting for {where}"):
            entries = trusted_digests()
            entries[digest] = {
                "path": str(path),
                "reference": reference,
                "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            atomic_write_bytes(where, (json.dumps(entries, indent=2) + "\n").encode())
    except OSError as e:  # a read-only home: the run still trains, its file is not listed
        log.warning("could not record %s as trusted in %s (%s)", path, where, e.strerror or e)


def own_reference(reference: str) -> str:
    """The model reference a user gave, now trusted: a model file's (``net.py:net``) as
    the absolute ``PATH.py:FUNC``, so that its run records it so and opens and resumes from
    any directory; a module's (``package.module:net``) as given."""
    _, path, digest = referenced(reference)
    remember(path, digest, reference)
    where, _, function = reference.rpartition(":")
    return f"{path}:{function}" if where.endswith(".py") else reference


def model_record(reference: str) -> dict[str, Any]:
    """``{"model_file": {"path", "sha256"}}`` for a model of one's own (an absolute
    ``PATH.py:FUNC``, see :func:`own_reference`), to write into the run; ``{}`` for a
    registered model."""
    if not is_reference(reference):
        return {}
    _, path, digest = referenced(reference)
    return {"model_file": {"path": str(path), "sha256": digest}}


def run_factory(name: Any, record: Any, source: Path, trust: bool = False) -> ModelFactory:
    """The factory of the model that the run file ``source`` names: ``name`` and, for a
    model of one's own, the ``record`` of its file (``{"path", "sha256"}``)."""
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"{source}: model must be a model's name, got {name!r}")
    if not is_reference(name):
        try:
            return registered(name)
        except ConfigError as e:
            raise CheckpointError(f"{source}: {e}") from None
    function = name.rpartition(":")[2]
    if not function.isidentifier():
        raise CheckpointError(f"{source}: model {name!r} does not name a function")
    path, digest = _recorded_file(record, source, name)
    if not path.is_absolute():
        raise CheckpointError(
            f"{source}: model {name!r} is not an absolute path; cnnlab runs no code that a "
            "run names relative to the directory it is opened from"
        )
    if not path.is_file():
        raise CheckpointError(
            f"the model's code {path} is gone (the run was trained with --model {name}); put "
            "the file back there to use the run"
        )
    if path.stat().st_size > MAX_MODEL_FILE:
        raise CheckpointError(f"{source}: the model's code {path} is over 4 MiB; not a model file")
    actual = file_digest(path)
    if actual != digest:
        raise CheckpointError(
            f"the model's code {path} changed since the run was trained (SHA-256 "
            f"{actual[:12]}..., recorded {digest[:12]}...): the weights may no longer fit "
            "it; restore the file, or train again"
        )
    if not trust and actual not in trusted_digests():
        raise UntrustedModel(
            f"{source} names the model code {path} (SHA-256 {actual[:12]}...), which you have "
            "not trained with on this machine, and cnnlab runs no code from a run directory "
            "unasked: read that file, then pass --trust-model-file (trust_model_file=True "
            "in Python) to run it"
        )
    try:
        factory, _, digest = referenced(f"{path}:{function}", actual)
    except ConfigError as e:
        raise CheckpointError(f"{source}: {e}") from None
    remember(path, digest, name)
    return factory


def _recorded_file(record: Any, source: Path, name: str) -> tuple[Path, str]:
    """The (path, SHA-256) a run recorded for its model file, checked for form."""
    if not isinstance(record, dict):
        raise CheckpointError(
            f"{source}: model {name!r} names code, but no model_file records which file and "
            "which SHA-256; a run names its model as a registered name (cnnlab models) or as "
            "a model file it was trained with, and cnnlab imports nothing else a run names"
        )
    path, digest = record.get("path"), record.get("sha256")
    if not isinstance(path, str) or not path or "\0" in path:
        raise CheckpointError(f"{source}: model_file.path must be a file's path, got {path!r}")
    if not isinstance(digest, str) or not SHA256.fullmatch(digest):
        raise CheckpointError(
            f"{source}: model_file.sha256 must be 64 hexadecimal digits, got {digest!r}"
        )
    return Path(path), digest
