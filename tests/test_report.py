"""`cnnlab viz` and `cnnlab report` on a tiny run; the report opened in a real headless Chromium."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.report import CSP, KINDS
from tests.viz.browser import require_chromium

pytestmark = pytest.mark.e2e  # trains runs to their end, or starts processes

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Appended to a copy of the page: after load, record every image's decoded size.
PROBE = """<script>window.addEventListener("load", () => {
  document.body.setAttribute("data-probe", JSON.stringify(
    [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight])));
});</script>"""


def test_every_viz_kind(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = tiny_run
    for kind in KINDS:
        assert main(["viz", kind, str(run), "--data-dir", str(data)]) == 0
        assert (run / f"{kind}.png").read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "maps.svg"
    assert (
        main(
            [
                "viz",
                "feature-maps",
                str(run),
                "--index",
                "3",
                "--out",
                str(out),
                "--data-dir",
                str(data),
            ]
        )
        == 0
    )
    assert out.read_text().lstrip().startswith("<?xml")


def test_viz_bad_input(tiny_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    run, data = tiny_run
    assert main(["viz", "feature-maps", str(run), "--index", "999", "--data-dir", str(data)]) == 1
    assert "test index 999 out of range: 0..39" in capsys.readouterr().err
    assert main(["viz", "kernels", str(run), str(run), "--data-dir", str(data)]) == 1
    assert "takes one run directory, got 2" in capsys.readouterr().err


def test_report_in_a_real_browser(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    chromium = require_chromium()
    run, data = tiny_run
    assert main(["report", str(run), "--data-dir", str(data)]) == 0
    page = (run / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # self-contained
    images = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,', page)
    assert len(images) == 9  # curves, 2 confusion, per-class, mistakes, kernels, 2 maps, pair

    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in page
    # The probe is a script of the test's own: its copy of the page drops the policy that
    # (rightly) blocks every script
    probe = tmp_path / "probe.html"
    unguarded = page.replace(f'<meta http-equiv="Content-Security-Policy" content="{CSP}">', "")
    probe.write_text(unguarded.replace("</body>", PROBE + "</body>"))
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    result = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            *profile,
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert ":CONSOLE" not in result.stderr, "the page logged to the console"
    decoded = json.loads(
        re.search(r'data-probe="([^"]*)"', result.stdout)[1].replace("&quot;", '"')
    )
    assert len(decoded) == 9
    assert all(ok and width > 0 and height > 0 for ok, width, height in decoded)

    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            *profile,
            "--window-size=1280,2400",
            f"--screenshot={shot}",
            (run / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 10_000


NOT_SEQUENTIAL = """\
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 5, padding=2)
        self.fc = nn.Linear(4 * 14 * 14, num_classes)

    def forward(self, x):
        return self.fc(nn.functional.max_pool2d(self.conv(x).relu(), 2).flatten(1))


def net(num_classes):
    return Net(num_classes)
"""


def test_the_report_of_a_model_that_is_not_a_sequential(
    tiny_run: tuple[Path, Path], tmp_path: Path
) -> None:
    from cnnlab.report import write_report
    from cnnlab.training import TrainConfig, train

    _, data = tiny_run
    (tmp_path / "net.py").write_text(NOT_SEQUENTIAL)
    config = TrainConfig(
        model=f"{tmp_path / 'net.py'}:net",
        dataset="tiny",
        data_dir=str(data),
        epochs=1,
        batch_size=16,
        lr=0.1,
        device="cpu",
        out_dir=str(tmp_path / "own"),
        quiet=True,
    )
    run = train(config).run_dir
    page = write_report(run).read_text()
    assert "feature maps of" in page
    assert "cnnlab explore" in page  # traced by torch.fx: the page can run it
    (tmp_path / "net.py").write_text(NOT_SEQUENTIAL.replace(".relu()", ".sinh()"))
    own = train(dataclasses.replace(config, out_dir=str(tmp_path / "other"))).run_dir
    page = write_report(own).read_text()
    assert "The in-browser explorer cannot run it: the explorer cannot run sinh" in page


def test_feature_maps_draws_every_image_it_is_given(
    tiny_run: tuple[Path, Path], tmp_path: Path
) -> None:
    from PIL import Image

    from cnnlab.report import RunView, inputs, make_figure

    run, data = tiny_run
    Image.new("L", (28, 28), 180).save(tmp_path / "coat.png")
    view = RunView.load(run, str(data))
    figure = make_figure(view, "feature-maps", inputs(view, [7], [tmp_path / "coat.png"], False))
    titles = [part._suptitle.get_text() for part in figure.subfigs]
    assert titles == [view.test_input(7)[0], "coat.png"]  # both drawn, in the order given
    words = [
        "viz",
        "feature-maps",
        str(run),
        "--data-dir",
        str(data),
        "--out",
        str(tmp_path / "m.png"),
    ]
    assert main([*words, "--index", "7", "--image", str(tmp_path / "coat.png")]) == 0


def test_the_reports_settings_are_what_applies_in_words(tiny_run: tuple[Path, Path]) -> None:
    from cnnlab.report import config_rows
    from cnnlab.rundir import read_config

    run, _ = tiny_run
    rows = dict(config_rows(read_config(run)))
    assert rows["optimizer"] == "sgd" and "momentum" not in rows  # plain SGD has none
    assert "channels" not in rows and "image size" not in rows  # not a folder dataset
    assert rows["lr"] == "0.9" and not any(v.startswith("{") for v in rows.values())
