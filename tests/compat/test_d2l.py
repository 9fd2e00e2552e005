"""The chapter's own code, run under ``from cnnlab.compat import d2l`` (the snippets are the
book's, PyTorch edition, with only the import line changed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.compat import d2l
from tests.conftest import REAL_DATA, needs_real_data


def book_lenet() -> nn.Sequential:
    """The chapter's LeNet, as the book writes it."""
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, 10))  # fmt: skip


def test_conv_layer_section() -> None:
    X = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert d2l.corr2d(X, K).tolist() == [[19.0, 25.0], [37.0, 43.0]]

    class Conv2D(nn.Module):
        def __init__(self, kernel_size):  # type: ignore[no-untyped-def]
            super().__init__()
            self.weight = nn.Parameter(torch.rand(kernel_size))
            self.bias = nn.Parameter(torch.zeros(1))

        def forward(self, x):  # type: ignore[no-untyped-def]
            return d2l.corr2d(x, self.weight) + self.bias

    X = torch.ones((6, 8))
    X[:, 2:6] = 0
    K = torch.tensor([[1.0, -1.0]])
    Y = d2l.corr2d(X, K)
    assert Y[:, 1].tolist() == [1.0] * 6 and d2l.corr2d(X.t(), K).abs().sum() == 0
    assert Conv2D((1, 2))(X).shape == (6, 7)

    torch.manual_seed(0)
    conv2d = nn.Conv2d(1, 1, kernel_size=(1, 2), bias=False)
    X = X.reshape((1, 1, 6, 8))
    Y = Y.reshape((1, 1, 6, 7))
    lr = 3e-2
    losses = []
    for i in range(10):  # noqa: B007
        Y_hat = conv2d(X)
        l = (Y_hat - Y) ** 2  # noqa: E741
        losses.append(float(l.sum().detach()))
        conv2d.zero_grad()
        l.sum().backward()
        conv2d.weight.data[:] -= lr * conv2d.weight.grad  # type: ignore[operator]
    assert losses[-1] < losses[0] / 10


def test_channels_section() -> None:
    def corr2d_multi_in(X, K):  # type: ignore[no-untyped-def]
        return sum(d2l.corr2d(x, k) for x, k in zip(X, K))  # noqa: B905

    X = torch.tensor([[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]],
                      [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]])  # fmt: skip
    K = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]]])
    assert corr2d_multi_in(X, K).tolist() == [[56.0, 72.0], [104.0, 120.0]]


def test_helpers_behave_like_the_books() -> None:
    metric = d2l.Accumulator(2)
    metric.add(d2l.accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])), 2)
    assert metric[0] == 1.0 and metric[1] == 2.0
    timer = d2l.Timer()
    assert timer.avg() == 0.0  # the book's divides by zero here
    timer.stop()
    assert len(timer.cumsum()) == 1
    assert d2l.try_gpu() == torch.device("cpu") or torch.cuda.is_available()
    assert d2l.try_all_gpus()[0].type in ("cpu", "cuda")
    assert d2l.get_fashion_mnist_labels([0, 9]) == ["t-shirt", "ankle boot"]


def test_train_ch6_with_fewer_than_five_batches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the Animator's picture lands here
    torch.manual_seed(0)
    X, y = torch.rand(48, 1, 28, 28), torch.randint(0, 10, (48,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16)
    net = book_lenet()
    d2l.train_ch6(net, loader, loader, 2, 0.9, d2l.try_gpu())
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "training on cpu" or torch.cuda.is_available()
    assert lines[1].startswith("loss ") and ", train acc " in lines[1] and ", test acc " in lines[1]
    assert lines[2].endswith("examples/sec on cpu") or torch.cuda.is_available()
    assert (tmp_path / "animator.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
@needs_real_data
def test_lenet_section_on_the_real_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    batch_size = 256
    train_iter, test_iter = d2l.load_data_fashion_mnist(batch_size=batch_size, data_dir=REAL_DATA)
    X, y = next(iter(train_iter))
    assert X.shape == (256, 1, 28, 28) and y.dtype == torch.int64 and 0 <= X.min() <= X.max() <= 1
    assert len(train_iter) == 235 and len(test_iter) == 40
    big, _ = d2l.load_data_fashion_mnist(batch_size=8, resize=64, data_dir=REAL_DATA)
    assert next(iter(big))[0].shape == (8, 1, 64, 64)

    net = book_lenet()
    lr, num_epochs = 0.9, 2
    d2l.train_ch6(net, train_iter, test_iter, num_epochs, lr, d2l.try_gpu())
    out = capsys.readouterr().out
    test_acc = float(out.split("test acc ")[1].split()[0])
    assert test_acc > 0.5  # the book's sigmoid LeNet reaches ~0.6-0.7 after 2 epochs
