"""The live training curves (viz.live): shown only in a notebook."""

from cnnlab.viz import LiveCurves, in_notebook


def test_live_curves_only_in_a_notebook(displayed: list[bytes]) -> None:
    assert not in_notebook()  # pytest is no Jupyter kernel
    live = LiveCurves()
    points = [{"x": 0.5, "train_loss": 1.0, "train_acc": 0.5}]
    live.update(points, [])
    live.update(points, [{"epoch": 1, "test_acc": 0.6}])
    assert len(displayed) == 2 and all(png[:4] == b"\x89PNG" for png in displayed)
