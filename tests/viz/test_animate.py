"""`cnnlab animate`: the book's worked examples frame by frame, as GIF, SVG and HTML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image, ImageColor

from cnnlab import ops
from cnnlab.cli import main
from cnnlab.viz.animate import BEST, TARGET, Text, animate
from tests.viz.browser import browser, open_page

__all__ = ["browser"]  # the fixture, imported for the tests below


def texts(frame: Any) -> list[str]:
    return [s.text for s in frame.shapes if isinstance(s, Text)]


def test_conv_book_example_fills_19_25_37_43() -> None:
    anim = animate("conv", (3, 3), (2, 2))
    assert [f.writes for f in anim.frames] == [{"output": [(r, c)]} for r in (0, 1) for c in (0, 1)]
    assert [f.reads["input"] for f in anim.frames][3] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert [f.caption.split(" = ")[1] for f in anim.frames] == ["19", "25", "37", "43"]
    last = texts(anim.frames[-1])
    assert all(v in last for v in ("19", "25", "37", "43"))  # the output filled in
    assert "37" not in texts(anim.frames[1])  # not before its window gets there


def test_channels_and_pool_and_1x1_values_are_the_ops_values() -> None:
    anim = animate("channels", (3, 3), (2, 2), channels=(2, 1))  # the book's 56, 72, 104, 120
    assert [f.caption.split(" = ")[1] for f in anim.frames] == ["56", "72", "104", "120"]
    assert anim.frames[0].caption.startswith("19 (channel 0) + 37 (channel 1)")
    assert [f.caption[-1] for f in animate("pool", stride=(1, 1)).frames] == ["4", "5", "7", "8"]
    default = animate("pool", (4, 4)).frames  # the stride is the window, as torch's layers
    assert [f.caption.split(" = ")[1] for f in default] == ["5", "7", "13", "15"]
    avg = animate("pool", (4, 4), (2, 2), stride=(2, 2), pool="avg")
    expected = ops.avg_pool2d(torch.arange(16.0).view(1, 4, 4), 2)
    assert [float(f.caption.split(" = ")[1]) for f in avg.frames] == expected.flatten().tolist()
    one = animate("conv1x1", (2, 2), channels=(3, 2))
    x = torch.arange(4.0).view(1, 2, 2) + torch.arange(3.0).view(3, 1, 1)
    w = torch.arange(6.0).view(2, 3) - 1
    first = [float(part.split(" = ")[1]) for part in one.frames[0].caption.split("; ")]
    assert first == (w @ x[:, 0, 0]).tolist()


def test_padding_stride_dilation_positions() -> None:
    anim = animate("conv", (5, 5), (3, 3), padding=(1, 1), stride=(2, 2))
    assert len(anim.frames) == 9  # (5 + 2 - 3) // 2 + 1 = 3 per side
    assert anim.frames[1].reads["input"][0] == (0, 2)  # padded coordinates, two to the right
    dilated = animate("conv", (5, 5), (2, 2), dilation=(2, 2))
    assert dilated.frames[0].reads["input"] == [(0, 0), (0, 2), (2, 0), (2, 2)]
    y = ops.conv2d(
        torch.arange(25.0).view(1, 1, 5, 5), torch.arange(4.0).view(1, 1, 2, 2), dilation=2
    )
    assert dilated.frames[0].caption.endswith(f"= {y[0, 0, 0, 0]:g}")


def test_gif_frames_show_each_window(tmp_path: Path) -> None:
    out = tmp_path / "conv.gif"
    assert main(["animate", "conv", "--input", "3x3", "--kernel", "2x2", "-o", str(out)]) == 0
    anim = animate("conv")
    top = 52  # the grids' top edge; each grid's name is drawn above its left edge
    left = {s.text: s.x for s in anim.static if isinstance(s, Text)}

    def has(frame: Image.Image, name: str, cell: tuple[int, int], colour: str) -> bool:
        """Whether the left border of ``cell`` of grid ``name`` is drawn in ``colour``."""
        r, c = cell
        pixel = frame.getpixel(
            (round(left[name] + c * anim.cell) + 1, round(top + (r + 0.5) * anim.cell))
        )
        want = ImageColor.getrgb(colour)
        return max(abs(a - b) for a, b in zip(pixel, want, strict=True)) < 24

    with Image.open(out) as gif:
        assert gif.n_frames == 4
        for t in range(4):
            gif.seek(t)
            frame = gif.convert("RGB")
            for name, colour in (("input", BEST), ("output", TARGET)):
                cells = anim.frames[t].reads.get(name) or anim.frames[t].writes[name]
                assert has(frame, name, cells[0], colour), (t, name)  # where the window is
                assert has(frame, name, (0, 0), colour) == ((0, 0) in cells), (t, name)


def test_svg_is_animated_and_well_formed(tmp_path: Path) -> None:
    out = tmp_path / "pool.svg"
    assert main(["animate", "pool", "--input", "4x4", "--stride", "2", "-o", str(out)]) == 0
    root = ET.parse(out).getroot()
    groups = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "frame"]
    assert len(groups) == 4
    assert all(g.find("{http://www.w3.org/2000/svg}animate") is not None for g in groups)


def test_animate_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["animate", "conv", "--input", "3x3", "--kernel", "5x5", "-o", str(tmp_path / "a.gif")]
        )
        == 1
    )
    assert "larger than the padded input" in capsys.readouterr().err
    assert main(["animate", "conv", "-o", str(tmp_path / "a.mp4")]) == 1
    assert "write a .gif, .svg or .html file" in capsys.readouterr().err
    assert main(["animate", "channels", "--channels", "9x1", "-o", str(tmp_path / "a.gif")]) == 1
    assert "each 1..4" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]  # the test's own cache, no output


@pytest.mark.e2e
def test_html_plays_in_chromium(browser: Any, tmp_path: Path) -> None:
    out = tmp_path / "c.html"
    assert (
        main(
            [
                "animate",
                "conv",
                "--input",
                "5x5",
                "--kernel",
                "3x3",
                "--padding",
                "1",
                "--stride",
                "2",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    errors: list[str] = []
    page = open_page(browser, out.as_uri(), errors)
    shown = (
        "[...document.querySelectorAll('g.frame')].findIndex(g => "
        "g.getAttribute('visibility') === 'visible')"
    )
    assert page.evaluate(shown) == 0
    page.wait_for_function(f"{shown} >= 2", timeout=5000)  # it plays
    page.click("#play")  # pause
    page.fill("#step", "7")
    page.dispatch_event("#step", "input")
    assert page.evaluate(shown) == 7
    assert page.text_content("#label") == "8 / 9"
    page.wait_for_timeout(1000)
    assert page.evaluate(shown) == 7  # paused stays put
    assert errors == []


def test_notebook_shows_the_player_inline() -> None:
    from IPython.core.interactiveshell import InteractiveShell

    data, _ = InteractiveShell.instance().display_formatter.format(animate("pool"))
    assert data["text/html"].startswith('<iframe sandbox="allow-scripts" srcdoc=')
    assert "g.frame" in data["text/html"]  # the player's script, escaped into the frame
