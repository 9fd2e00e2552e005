"""The book's LeNet sections as notebooks, executed in a real IPython kernel (nbclient),
checked by what a learner sees: no error, the book's printed lines, and the live figure
shown once and then updated in place (a display_id), never a ``<Figure ...>`` line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import needs_real_data

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

# Each edition's LeNet section, as calls the book's cells make, with the import changed.
NET = """\
import torch
from torch import nn
from cnnlab.compat import d2l

torch.manual_seed(0)
net = nn.Sequential(
    nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
    nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
    nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(),
    nn.Linear(84, 10))"""
CHINESE = [
    NET,
    """\
X = torch.rand(size=(1, 1, 28, 28), dtype=torch.float32)
for layer in net:
    X = layer(X)
    print(layer.__class__.__name__, 'output shape: \\t', X.shape)""",
    "batch_size = 256\ntrain_iter, test_iter = d2l.load_data_fashion_mnist(batch_size=batch_size)",
    "lr, num_epochs = 0.9, 1\nd2l.train_ch6(net, train_iter, test_iter, num_epochs, lr, d2l.try_gpu())",
]
ENGLISH = [
    """\
import torch
from torch import nn
from cnnlab.compat import d2l

torch.manual_seed(0)""",
    "model = d2l.LeNet()\nmodel.layer_summary((1, 1, 28, 28))",
    """\
trainer = d2l.Trainer(max_epochs=1, num_gpus=1)
data = d2l.FashionMNIST(batch_size=128)
model = d2l.LeNet(lr=0.1)
model.apply_init([next(iter(data.get_dataloader(True)))[0]], d2l.init_cnn)
trainer.fit(model, data)""",
]


class Recording(nbclient.NotebookClient):  # type: ignore[misc]
    """Records every display message the kernel sends: (cell, type, display_id, mime types)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.displays: list[tuple[int, str, str | None, list[str]]] = []

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        kind = msg["header"]["msg_type"]
        if kind in ("display_data", "update_display_data"):
            content = msg["content"]
            display_id = (content.get("transient") or {}).get("display_id")
            self.displays.append((cell_index, kind, display_id, sorted(content["data"])))
        return super().process_message(msg, cell, cell_index)


def execute(cells: list[str], directory: Path) -> tuple[Any, Recording]:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = Recording(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(directory)}},
    )
    client.execute()
    return notebook, client


def text_of(cell: Any) -> str:
    """The text a learner reads under ``cell``: printed lines and results (a picture's
    text/plain stand-in is not shown by a notebook that can show the picture)."""
    assert all(o.output_type != "error" for o in cell.outputs), cell.outputs
    return "".join(
        o.get("text", "") if o.output_type == "stream" else o.data.get("text/plain", "")
        for o in cell.outputs
        if o.output_type in ("stream", "execute_result")
    )


def assert_live_figure(notebook: Any, client: Recording, cell_index: int) -> None:
    """The training cell showed one PNG and updated it in place; nothing else was shown."""
    shown = [d for d in client.displays if d[0] == cell_index]
    first, *updates = shown
    assert first[1] == "display_data" and first[2] and "image/png" in first[3], shown
    assert updates and all(u[1:3] == ("update_display_data", first[2]) for u in updates), shown
    assert all("image/png" in u[3] for u in updates)
    pictures = [o for o in notebook.cells[cell_index].outputs if "image/png" in o.get("data", {})]
    assert len(pictures) == 1  # updated in place, not appended
    assert "<Figure" not in text_of(notebook.cells[cell_index])
    assert "the figure is in" not in text_of(notebook.cells[cell_index])


@pytest.mark.slow
@needs_real_data
def test_chinese_edition_lenet_notebook(tmp_path: Path) -> None:
    notebook, client = execute(CHINESE, tmp_path)
    shapes = text_of(notebook.cells[1]).splitlines()
    assert shapes[0] == "Conv2d output shape: \t torch.Size([1, 6, 28, 28])"
    assert shapes[-1] == "Linear output shape: \t torch.Size([1, 10])" and len(shapes) == 12
    printed = text_of(notebook.cells[3])
    book = (
        r"training on (cpu|cuda:0)\nloss \d\.\d{3}, train acc \d\.\d{3}, test acc \d\.\d{3}\n"
        r"\d+\.\d examples/sec on (cpu|cuda:0)\n"
    )
    assert re.fullmatch(book, printed), printed
    assert_live_figure(notebook, client, 3)


@pytest.mark.slow
@needs_real_data
def test_english_edition_lenet_notebook(tmp_path: Path) -> None:
    notebook, client = execute(ENGLISH, tmp_path)
    summary = text_of(notebook.cells[1]).splitlines()
    assert summary[0] == "Conv2d output shape:\t torch.Size([1, 6, 28, 28])"
    assert summary[-1] == "Linear output shape:\t torch.Size([1, 10])" and len(summary) == 12
    # The book's Trainer prints nothing, it plots; cnnlab's says where it trains.
    assert text_of(notebook.cells[2]) in (
        "",
        "d2l.Trainer: num_gpus=1 asked for, 0 found; training on cpu\n",
    )
    assert_live_figure(notebook, client, 2)
