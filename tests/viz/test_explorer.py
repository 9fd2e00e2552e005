"""`cnnlab explore`: the page runs every registered model in a real headless Chromium and
agrees with PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnlab.cli import main
from cnnlab.models import create_model, list_models
from cnnlab.ops import Layer, trace
from cnnlab.predict import Classifier
from cnnlab.rundir import load_model
from cnnlab.training.metrics import class_probabilities
from cnnlab.viz.explorer import _Tracer, explorer_page, model_spec
from tests.viz.browser import browser, open_page

pytestmark = pytest.mark.e2e  # trains runs to their end, or starts processes

__all__ = ["browser"]  # the fixture, imported for the tests below
READY = "document.body.dataset.firstPredictionMs !== undefined"


def meta_for(name: str, tta: bool = False) -> dict[str, Any]:
    return {
        "model": name,
        "classes": [f"class{i}" for i in range(10)],
        "tta": tta,
        "preprocessing": {"input_shape": [1, 28, 28]},
    }


def probabilities(model: nn.Module, pixels: np.ndarray, tta: bool = False) -> np.ndarray:
    x = torch.from_numpy(pixels.astype(np.float32)).view(1, 1, 28, 28)
    with torch.no_grad():
        return class_probabilities(model.eval(), x, tta)[0].double().numpy()


@pytest.mark.parametrize("name", [n for n in list_models() if n.startswith("lenet")])
def test_every_lenet_matches_pytorch_in_the_browser(
    name: str, browser: Any, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = create_model(name)
    for m in model.modules():  # batch norm with statistics that are not the identity
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    tta = name == "lenet-relu"  # one model with test-time augmentation, as --recipe best
    out = tmp_path / "x.html"
    out.write_text(explorer_page(model, meta_for(name, tta), images, np.arange(5)).html)
    errors: list[str] = []
    page = open_page(browser, out.as_uri() + "#index=0", errors)
    page.wait_for_function(READY)
    for k in (0, 3, 4):
        page.evaluate(f"location.hash = '#index={k}'")
        page.wait_for_function(f"document.getElementById('index').value === '{k}'")
        got = np.array(page.evaluate("window.cnnlab.probabilities"))
        want = probabilities(model, images[k] / 255, tta)
        assert np.abs(got - want).max() < 1e-4, (name, k)
        # Every layer on its own, so that an error a near-uniform softmax hides still shows.
        x = torch.from_numpy((images[k] / 255).astype(np.float32)).view(1, 1, 28, 28)
        shown = [m for m in model if not isinstance(m, nn.Dropout)]
        for n, (module, values) in enumerate(
            zip(shown, page.evaluate("window.cnnlab.layers()"), strict=True)
        ):
            with torch.no_grad():
                x = module(x)
            scale = max(1.0, float(x.abs().max()))
            assert np.abs(np.array(values) - x.flatten().numpy()).max() < 1e-4 * scale, (name, n)
        assert page.text_content("#prediction") == f"class{int(want.argmax())}"
    assert errors == []


def test_explore_run_predicts_as_cnnlab_predict(
    browser: Any, tiny_run: tuple[Path, Path], tmp_path: Path
) -> None:
    run, data = tiny_run
    assert main(["explore", str(run), "--data-dir", str(data), "--images", "20"]) == 0
    page_file = run / "explorer.html"
    text = page_file.read_text()
    assert "http://" not in text and "https://" not in text  # nothing fetched
    model, meta = load_model(run)
    from cnnlab.data import load_dataset

    _, test = load_dataset(meta["dataset"], data)
    png = tmp_path / "test0.png"
    Image.fromarray(test.images[0]).save(png)
    [prediction] = Classifier(model, meta).predict([png])  # as `cnnlab predict` reads it
    errors: list[str] = []
    page = open_page(browser, page_file.as_uri() + "#index=0", errors)
    page.wait_for_function(READY)
    assert page.text_content("#prediction") == prediction.label

    # A stroke drawn with the mouse: the page's input changes and its prediction is still
    # PyTorch's on exactly those pixels.
    page.click("#clear")
    box = page.locator("#input").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    for t in range(1, 11):
        page.mouse.move(
            box["x"] + box["width"] * (0.3 + 0.04 * t), box["y"] + box["height"] * (0.2 + 0.06 * t)
        )
    page.mouse.up()
    pixels = np.array(page.evaluate("window.cnnlab.pixels"))
    assert (pixels > 0.5).sum() > 20  # a line about 3 pixels wide
    got = np.array(page.evaluate("window.cnnlab.probabilities"))
    assert np.abs(got - probabilities(model, pixels)).max() < 1e-4
    assert page.text_content("#prediction") == f"class{int(got.argmax())}"

    # Hover: pixel (4, 6) of the second conv's output lights up its receptive field.
    spec = model_spec(model, [1, 28, 28])
    second = [i for i, entry in enumerate(spec) if entry["op"] == "conv"][1]
    canvas = page.locator(".layer").nth(second).locator("canvas").nth(2)
    cbox = canvas.bounding_box()
    h, w = spec[second]["out"][1:]
    canvas.hover(position={"x": (6.5 / w) * cbox["width"], "y": (4.5 / h) * cbox["height"]})
    stack = [
        Layer("conv", (5, 5), padding=(2, 2)),
        Layer("pool", (2, 2), (2, 2)),
        Layer("conv", (5, 5)),
    ]
    f = trace((28, 28), stack)[-1].field_h  # square: the same per axis
    rows = [max(0, f.start + 4 * f.jump - f.size / 2), f.start + 4 * f.jump + f.size / 2]
    assert page.get_attribute("#field", "data-rows") == ",".join(f"{v:g}" for v in rows)
    assert "channel 2" in page.text_content("#kernel")
    assert page.locator("#kernel canvas").count() == 6  # one slice per input channel
    assert errors == []

    assert main(["report", str(run), "--data-dir", str(data)]) == 0
    assert 'href="explorer.html"' in (run / "report.html").read_text()


def test_book_lenet_page_is_small() -> None:
    images = np.zeros((300, 28, 28), dtype=np.uint8)
    page = explorer_page(create_model("lenet"), meta_for("lenet"), images, np.zeros(300))
    assert len(page.html.encode()) < 2_000_000
    assert page._repr_html_().startswith('<iframe sandbox="allow-scripts" srcdoc=')


def test_unsupported_layer_is_named() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.GELU(), nn.Flatten(), nn.Linear(2 * 26 * 26, 10))
    with pytest.raises(ValueError, match="cannot run GELU; it runs Conv2d"):
        model_spec(model, [1, 28, 28])


HOSTILE = [
    "<img src=x onerror=\"window.pwned = 1; document.title = 'pwned'\">",
    "<!--",
    "<script>window.pwned = 2</script>",
    "</script><script>window.pwned = 3</script>",
    "a & b",
    "\u2028line",
    "\x1b]0;retitled\x07",
    "\x1b[2J",
    "ok",
    "<b>bold</b>",
]


def hostile_run(run: Path) -> None:
    """Give a finished run's model.json class names that are markup and escape sequences."""
    import json

    meta = json.loads((run / "model.json").read_text())
    meta["classes"] = HOSTILE
    (run / "model.json").write_text(json.dumps(meta))


def test_a_run_with_hostile_class_names_runs_no_script_in_its_pages(
    browser: Any, tiny_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run, data = tiny_run
    hostile_run(run)
    assert main(["explore", str(run), "--data-dir", str(data), "--images", "5"]) == 0
    assert main(["report", str(run), "--data-dir", str(data)]) == 0
    for page_file in (run / "explorer.html", run / "report.html"):
        assert 'http-equiv="Content-Security-Policy"' in page_file.read_text()
        errors: list[str] = []
        page = open_page(browser, page_file.as_uri(), errors)
        if page_file.name == "explorer.html":
            page.wait_for_function(READY)
            # the names are the bars' text, whole, and no element was made from them
            bars = page.locator("#probs .bar span").all_text_contents()
            assert bars == HOSTILE
            assert page.locator("#probs img, #probs script, #probs b").count() == 0
        assert page.evaluate("window.pwned") is None
        assert "pwned" not in page.title()
        assert errors == [], page_file.name
    # on a terminal the escape sequences are shown, not obeyed
    capsys.readouterr()
    assert main(["eval", str(run), "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b]0;retitled\\x07" in out and "\\x1b[2J" in out


def test_the_notebook_frame_is_sandboxed_without_the_notebooks_origin() -> None:
    from cnnlab.viz.explorer import Explorer

    frame = Explorer("<p>page</p>")._repr_html_()
    assert frame.startswith('<iframe sandbox="allow-scripts" ')
    assert "allow-same-origin" not in frame


def test_an_rgb_folder_run_in_the_browser_matches_pytorch_and_cnnlab_predict(
    browser: Any, tmp_path: Path
) -> None:
    from tests.data.test_folder import write_pictures

    write_pictures(tmp_path / "pictures", per_class=10)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                f"folder:{tmp_path / 'pictures'}",
                "--model",
                "lenet-relu-max",
                "--lr",
                "0.1",
                "--batch-size",
                "8",
                "--epochs",
                "2",
                "--device",
                "cpu",
                "--quiet",
                "--out-dir",
                str(run),
            ]
        )
        == 0
    )
    assert main(["explore", str(run)]) == 0
    model, meta = load_model(run)
    from cnnlab.data.folder import splits_of_run

    _, test, _, _ = splits_of_run(meta, None)
    errors: list[str] = []
    page = open_page(browser, (run / "explorer.html").as_uri() + "#index=1", errors)
    page.wait_for_function(READY)
    x = torch.from_numpy(test.images[1:2]).float() / 255  # (1, 3, 32, 32)
    with torch.no_grad():
        want = class_probabilities(model.eval(), x)[0].double().numpy()
    got = np.array(page.evaluate("window.cnnlab.probabilities"))
    assert np.abs(got - want).max() < 1e-4
    png = tmp_path / "test1.png"
    Image.fromarray(test.images[1].transpose(1, 2, 0), "RGB").save(png)
    [prediction] = Classifier(model, meta).predict([png])  # as `cnnlab predict` reads it
    assert page.text_content("#prediction") == prediction.label
    page.click("#clear")  # a white stroke reaches every channel
    box = page.locator("#input").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.8, steps=5)
    page.mouse.up()
    drawn = np.array(page.evaluate("window.cnnlab.pixels")).reshape(3, 32, 32)
    assert drawn.max() > 0.9 and np.array_equal(drawn[0], drawn[2])
    x = torch.from_numpy(drawn.astype(np.float32))[None]
    with torch.no_grad():
        want = class_probabilities(model.eval(), x)[0].double().numpy()
    assert np.abs(np.array(page.evaluate("window.cnnlab.probabilities")) - want).max() < 1e-4
    assert errors == []


@pytest.mark.parametrize(
    ("layer", "said"),
    [
        (nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), "padding_mode='zeros'"),
        (nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"), "padding_mode='zeros'"),
        (nn.BatchNorm2d(1, track_running_stats=False), "running statistics"),
    ],
)
def test_a_layer_option_the_page_does_not_compute_is_refused_by_name(
    layer: nn.Module, said: str
) -> None:
    model = nn.Sequential(layer, nn.Flatten(), nn.LazyLinear(10))
    model(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match=said):
        model_spec(model, [1, 8, 8])


# The Modern-CNN networks the page holds (AlexNet's and VGG's weights would make it
# hundreds of MB), at small sides so the test is quick; the graph ones traced by torch.fx.
MODERN = {
    "bnlenet": {},
    "nin": {"resize": 96},
    "googlenet": {"resize": 32},
    "resnet18": {"resize": 32},
    "densenet": {"resize": 32},
}


@pytest.mark.parametrize("name", list(MODERN))
def test_the_modern_networks_match_pytorch_in_the_browser(
    name: str, browser: Any, tmp_path: Path
) -> None:
    import torch.fx

    torch.manual_seed(0)
    model = create_model(name, **MODERN[name]).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
    images = np.random.default_rng(0).integers(0, 256, size=(2, 28, 28), dtype=np.uint8)
    spec = explorer_page(model, meta_for(name, False), images, np.arange(2))
    (tmp_path / "x.html").write_text(spec.html)
    errors: list[str] = []
    page = open_page(browser, (tmp_path / "x.html").as_uri() + "#index=1", errors)
    page.wait_for_function(READY, timeout=120_000)
    got = np.array(page.evaluate("window.cnnlab.probabilities"))
    want = probabilities(model, images[1] / 255, False)
    assert np.abs(got - want).max() < 1e-4
    # each operation on its own, against the output of the module or node it stands for
    layers = model_spec(model, [1, 28, 28])
    x = torch.from_numpy((images[1] / 255).astype(np.float32)).view(1, 1, 28, 28)
    seen: dict[str, torch.Tensor] = {}
    if "inputs" in layers[-1]:  # a traced graph: the nodes' outputs, by name

        class Record(torch.fx.Interpreter):
            def run_node(self, n: torch.fx.Node) -> Any:
                seen[n.name] = result = super().run_node(n)
                return result

        with torch.no_grad():
            Record(torch.fx.GraphModule(model, _Tracer().trace(model))).run(x)
        wanted = [seen[layer["name"]] for layer in layers]
    else:  # a chain: each module's output but dropout's
        wanted = []
        with torch.no_grad():
            for module in model:
                x = module(x)
                wanted += [] if isinstance(module, nn.Dropout) else [x]
    values = page.evaluate("window.cnnlab.layers()")
    for layer, shown, want_tensor in zip(layers, values, wanted, strict=True):
        want_layer = want_tensor.flatten().numpy()
        scale = max(1.0, float(np.abs(want_layer).max()))
        assert np.abs(np.array(shown) - want_layer).max() < 1e-4 * scale, (name, layer["name"])
    assert errors == []


def test_networks_too_large_for_a_page_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="46,764,746 parameters would make it 249 MB"):
        model_spec(create_model("alexnet"), [1, 28, 28])
