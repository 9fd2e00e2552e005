"""The chapter's cells run under ``from cnnlab.compat import d2l``: each test makes the calls
the book's PyTorch cells make, section by section, in both editions, and checks what the
book prints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from cnnlab.compat import d2l
from cnnlab.data import datasets as ds
from tests.conftest import REAL_DATA, needs_real_data, write_dataset

EXPECTED_DEVICE = "cuda:0" if torch.cuda.is_available() else "cpu"


def book_lenet() -> nn.Sequential:
    """The chapter's LeNet, as the Chinese edition writes it."""
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2),
        nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.Sigmoid(),
        nn.Linear(120, 84),
        nn.Sigmoid(),
        nn.Linear(84, 10),
    )


@pytest.fixture
def tiny_fashion_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tiny IDX files standing in for Fashion-MNIST (with their own checksums); the
    working directory is ``tmp_path``, where the book's figures land."""
    directory = tmp_path / "data"
    monkeypatch.setitem(ds.DATASETS, "fashion-mnist", write_dataset(directory, 300, 100))
    monkeypatch.chdir(tmp_path)
    return directory


# -- the tensor names -------------------------------------------------------------------


def test_tensor_names_mean_what_the_book_means() -> None:
    X = d2l.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    assert d2l.zeros((2, 3)).equal(torch.zeros(2, 3)) and d2l.ones(2).tolist() == [1.0, 1.0]
    assert d2l.zeros_like(X).equal(torch.zeros(2, 3)) and d2l.ones_like(X).sum() == 6
    assert d2l.arange(16, dtype=d2l.float32).dtype == torch.float32
    assert d2l.reduce_sum(X) == 15 and d2l.reduce_sum(X, dim=0).tolist() == [3.0, 5.0, 7.0]
    assert d2l.reduce_mean(X) == 2.5 and d2l.argmax(X, axis=1).tolist() == [2, 2]
    assert d2l.transpose(X).shape == (3, 2) and d2l.transpose(X)[2].tolist() == [2.0, 5.0]
    assert d2l.reshape(X, (3, 2)).tolist() == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    assert d2l.reshape(X, -1).shape == (6,)
    assert d2l.stack((X, X + 1), 0).shape == (2, 2, 3)
    assert d2l.concat((X, X + 1), 1).shape == (2, 6)
    assert d2l.matmul(X, d2l.transpose(X)).tolist() == [[5.0, 14.0], [14.0, 50.0]]
    assert d2l.abs(d2l.tensor([-1.0, 2.0])).tolist() == [1.0, 2.0]
    assert d2l.astype(X, d2l.int32).dtype == torch.int32
    assert d2l.to(X, d2l.cpu()).device.type == "cpu"
    assert d2l.size(X) == 6 and d2l.expand_dims(X, 0).shape == (1, 2, 3)
    assert isinstance(d2l.numpy(X), np.ndarray) and d2l.numpy(X).shape == (2, 3)
    assert d2l.eye(3).trace() == 3 and d2l.linspace(0, 1, 5)[-1] == 1
    assert d2l.normal(0, 1, (3, 3, 3)).shape == (3, 3, 3)
    assert d2l.rand(2, 2).shape == d2l.randn(2, 2).shape == (2, 2)
    assert d2l.exp(d2l.log(d2l.tensor(2.0))).item() == pytest.approx(2.0)
    assert d2l.swapaxes(d2l.zeros(2, 3), 0, 1).shape == (3, 2)
    assert d2l.repeat(d2l.ones(2), 3).shape == (6,)
    assert d2l.batch_matmul(d2l.ones(4, 2, 3), d2l.ones(4, 3, 5)).shape == (4, 2, 5)
    assert d2l.sigmoid(d2l.zeros(1)).item() == 0.5 and d2l.int64 is torch.int64
    assert d2l.nn_Module is nn.Module


def test_a_name_from_another_chapter_says_what_the_module_covers() -> None:
    with pytest.raises(AttributeError) as caught:
        d2l.RNNModel  # noqa: B018
    message = str(caught.value)
    assert "'RNNModel'" in message and "convolutional networks (conv-layer" in message
    assert "modern CNNs (alexnet" in message
    assert "pip install d2l" in message
    assert not hasattr(d2l, "__wrapped__")  # the module protocol still works


# -- conv-layer, padding-and-strides, channels, pooling ------------------------------


def test_conv_layer_section() -> None:
    def corr2d(X, K):  # type: ignore[no-untyped-def]  # the book's loop, on d2l's names
        h, w = K.shape
        Y = d2l.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
        for i in range(Y.shape[0]):
            for j in range(Y.shape[1]):
                Y[i, j] = d2l.reduce_sum(X[i : i + h, j : j + w] * K)
        return Y

    X = d2l.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    K = d2l.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert corr2d(X, K).tolist() == d2l.corr2d(X, K).tolist() == [[19.0, 25.0], [37.0, 43.0]]
    assert repr(d2l.corr2d(X, K)) == "tensor([[19., 25.],\n        [37., 43.]])"

    X = d2l.ones((6, 8))
    X[:, 2:6] = 0
    K = d2l.tensor([[1.0, -1.0]])
    Y = corr2d(X, K)
    assert Y[:, 1].tolist() == [1.0] * 6 and Y[:, 5].tolist() == [-1.0] * 6
    assert Y.abs().sum() == 12  # zero elsewhere
    assert corr2d(d2l.transpose(X), K).abs().sum() == 0

    torch.manual_seed(0)
    conv2d = nn.LazyConv2d(1, kernel_size=(1, 2), bias=False)
    X, Y = X.reshape((1, 1, 6, 8)), Y.reshape((1, 1, 6, 7))
    losses = []
    for _ in range(10):
        loss = (conv2d(X) - Y) ** 2
        conv2d.zero_grad()
        loss.sum().backward()
        conv2d.weight.data[:] -= 3e-2 * conv2d.weight.grad  # type: ignore[operator]
        losses.append(float(loss.sum().detach()))
    assert losses[-1] < 0.1 and losses[-1] < losses[0] / 10
    assert d2l.reshape(conv2d.weight.data, (2,)).tolist() == pytest.approx([1, -1], abs=0.1)


def test_padding_and_strides_section() -> None:
    def comp_conv2d(conv2d, X):  # type: ignore[no-untyped-def]
        X = X.reshape((1, 1, *X.shape))
        Y = conv2d(X)
        return Y.reshape(Y.shape[2:])

    X = torch.rand(size=(8, 8))
    shapes = [
        comp_conv2d(conv, X).shape
        for conv in (
            nn.LazyConv2d(1, kernel_size=3, padding=1),
            nn.LazyConv2d(1, kernel_size=(5, 3), padding=(2, 1)),
            nn.LazyConv2d(1, kernel_size=3, padding=1, stride=2),
            nn.LazyConv2d(1, kernel_size=(3, 5), padding=(0, 1), stride=(3, 4)),
        )
    ]
    assert shapes == [(8, 8), (8, 8), (4, 4), (2, 2)]


def test_channels_section() -> None:
    def corr2d_multi_in(X, K):  # type: ignore[no-untyped-def]
        return sum(d2l.corr2d(x, k) for x, k in zip(X, K))  # noqa: B905

    def corr2d_multi_in_out(X, K):  # type: ignore[no-untyped-def]
        return d2l.stack([corr2d_multi_in(X, k) for k in K], 0)

    def corr2d_multi_in_out_1x1(X, K):  # type: ignore[no-untyped-def]
        c_i, h, w = X.shape
        c_o = K.shape[0]
        X = d2l.reshape(X, (c_i, h * w))
        K = d2l.reshape(K, (c_o, c_i))
        return d2l.reshape(d2l.matmul(K, X), (c_o, h, w))

    X = d2l.tensor(
        [
            [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]],
            [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]],
        ]
    )
    K = d2l.tensor([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]]])
    assert corr2d_multi_in(X, K).tolist() == [[56.0, 72.0], [104.0, 120.0]]
    K = d2l.stack((K, K + 1, K + 2), 0)
    assert K.shape == (3, 2, 2, 2)
    assert corr2d_multi_in_out(X, K).tolist() == [
        [[56.0, 72.0], [104.0, 120.0]],
        [[76.0, 100.0], [148.0, 172.0]],
        [[96.0, 128.0], [192.0, 224.0]],
    ]
    X, K = d2l.normal(0, 1, (3, 3, 3)), d2l.normal(0, 1, (2, 3, 1, 1))
    Y1, Y2 = corr2d_multi_in_out_1x1(X, K), corr2d_multi_in_out(X, K)
    assert float(d2l.reduce_sum(d2l.abs(Y1 - Y2))) < 1e-6


def test_pooling_section() -> None:
    def pool2d(X, pool_size, mode="max"):  # type: ignore[no-untyped-def]
        p_h, p_w = pool_size
        Y = d2l.zeros((X.shape[0] - p_h + 1, X.shape[1] - p_w + 1))
        for i in range(Y.shape[0]):
            for j in range(Y.shape[1]):
                window = X[i : i + p_h, j : j + p_w]
                Y[i, j] = window.max() if mode == "max" else window.mean()
        return Y

    X = d2l.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    assert pool2d(X, (2, 2)).tolist() == [[4.0, 5.0], [7.0, 8.0]]
    assert pool2d(X, (2, 2), "avg").tolist() == [[2.0, 3.0], [5.0, 6.0]]
    X = d2l.reshape(d2l.arange(16, dtype=d2l.float32), (1, 1, 4, 4))
    assert nn.MaxPool2d(3)(X).tolist() == [[[[10.0]]]]
    assert nn.MaxPool2d(3, padding=1, stride=2)(X).tolist() == [[[[5.0, 7.0], [13.0, 15.0]]]]
    pooled = nn.MaxPool2d((2, 3), stride=(2, 3), padding=(0, 1))(X)
    assert pooled.tolist() == [[[[5.0, 7.0], [13.0, 15.0]]]]
    X = d2l.concat((X, X + 1), 1)
    assert nn.MaxPool2d(3, padding=1, stride=2)(X).tolist() == [
        [[[5.0, 7.0], [13.0, 15.0]], [[6.0, 8.0], [14.0, 16.0]]]
    ]


# -- lenet, Chinese edition (train_ch6) -------------------------------------------------


def test_lenet_layer_shapes_print_as_in_the_book(capsys: pytest.CaptureFixture[str]) -> None:
    X = torch.rand(size=(1, 1, 28, 28), dtype=torch.float32)
    for layer in book_lenet():
        X = layer(X)
        print(layer.__class__.__name__, "output shape: \t", X.shape)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Conv2d output shape: \t torch.Size([1, 6, 28, 28])"
    assert lines[5] == "AvgPool2d output shape: \t torch.Size([1, 16, 5, 5])"
    assert lines[-1] == "Linear output shape: \t torch.Size([1, 10])"


def test_helpers_behave_like_the_books() -> None:
    metric = d2l.Accumulator(2)
    metric.add(d2l.accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])), 2)
    assert metric[0] == 1.0 and metric[1] == 2.0
    timer = d2l.Timer()
    assert timer.avg() == 0.0  # the book's divides by zero here
    timer.stop()
    assert len(timer.cumsum()) == 1
    assert str(d2l.try_gpu()) == EXPECTED_DEVICE
    assert str(d2l.try_all_gpus()[0]) == EXPECTED_DEVICE
    assert d2l.get_fashion_mnist_labels([0, 9]) == ["t-shirt", "ankle boot"]
    assert d2l.cpu() == torch.device("cpu") and d2l.gpu(1) == torch.device("cuda:1")
    assert d2l.num_gpus() == torch.cuda.device_count()


def test_train_ch6_with_fewer_than_five_batches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the Animator's picture lands here
    torch.manual_seed(0)
    X, y = torch.rand(48, 1, 28, 28), torch.randint(0, 10, (48,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16)
    d2l.train_ch6(book_lenet(), loader, loader, 2, 0.9, d2l.try_gpu())
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"training on {EXPECTED_DEVICE}"
    assert lines[1].startswith("loss ") and ", train acc " in lines[1] and ", test acc " in lines[1]
    assert lines[2].endswith(f"examples/sec on {EXPECTED_DEVICE}")
    assert float(lines[2].split()[0]) > 0
    assert (tmp_path / "animator.png").read_bytes()[:4] == b"\x89PNG"


def test_load_data_fashion_mnist_batches_and_resizes(tiny_fashion_mnist: Path) -> None:
    torch.manual_seed(0)
    train_iter, test_iter = d2l.load_data_fashion_mnist(32, data_dir=tiny_fashion_mnist)
    assert len(train_iter) == 10 and len(test_iter) == 4
    first = [y for _, y in train_iter]
    again = [y for _, y in train_iter]
    assert not all(a.equal(b) for a, b in zip(first, again, strict=True))  # reshuffled
    assert sorted(torch.cat(first).tolist()) == sorted(torch.cat(again).tolist())
    X, y = next(iter(test_iter))
    assert X.shape == (32, 1, 28, 28) and y.dtype == torch.int64 and 0 <= X.min() <= X.max() <= 1
    big, _ = d2l.load_data_fashion_mnist(8, resize=64, data_dir=tiny_fashion_mnist)
    assert next(iter(big))[0].shape == (8, 1, 64, 64)


# -- lenet, English edition (Module / Trainer) ------------------------------------------


class SyntheticData(d2l.DataModule):
    """A DataModule written the book's way (``get_tensorloader``), on random images whose
    brightness gives the label away."""

    def __init__(self, n: int = 256, batch_size: int = 32) -> None:
        super().__init__()
        self.save_hyperparameters()
        generator = torch.Generator().manual_seed(0)
        self.y = torch.randint(0, 10, (n,), generator=generator)
        self.X = (
            torch.rand(n, 1, 28, 28, generator=generator) * 0.2 + self.y[:, None, None, None] / 12
        )

    def get_dataloader(self, train: bool) -> torch.utils.data.DataLoader:  # type: ignore[type-arg]
        i = slice(0, self.n * 3 // 4) if train else slice(self.n * 3 // 4, None)
        return self.get_tensorloader((self.X, self.y), train, i)


def test_save_hyperparameters_and_add_to_class() -> None:
    class Net(d2l.HyperParameters):
        def __init__(self, a, b=2, _private=3, skip=4):  # type: ignore[no-untyped-def]
            self.save_hyperparameters(ignore=["skip"])

    net = Net(1)
    assert net.hparams == {"a": 1, "b": 2} and net.a == 1 and net.b == 2  # type: ignore[attr-defined]
    assert not hasattr(net, "skip") and not hasattr(net, "_private")

    @d2l.add_to_class(Net)
    def total(self):  # type: ignore[no-untyped-def]
        return self.a + self.b

    assert net.total() == 3  # type: ignore[attr-defined]


def test_layer_summary_prints_the_books_lines(capsys: pytest.CaptureFixture[str]) -> None:
    d2l.LeNet().layer_summary((1, 1, 28, 28))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 12
    assert lines[0] == "Conv2d output shape:\t torch.Size([1, 6, 28, 28])"
    assert lines[2] == "AvgPool2d output shape:\t torch.Size([1, 6, 14, 14])"
    assert lines[6] == "Flatten output shape:\t torch.Size([1, 400])"
    assert lines[-1] == "Linear output shape:\t torch.Size([1, 10])"


def test_trainer_fits_a_classifier_and_plots_its_curves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    data = SyntheticData()
    model = d2l.LeNet(lr=0.5)
    model.apply_init([next(iter(data.get_dataloader(True)))[0]], d2l.init_cnn)
    assert model.lr == 0.5 and model.hparams == {"lr": 0.5, "num_classes": 10}
    before = [p.detach().clone() for p in model.parameters()]
    trainer = d2l.Trainer(max_epochs=3, num_gpus=1)
    trainer.fit(model, data)
    assert trainer.num_train_batches == 6 and trainer.num_val_batches == 2
    assert trainer.train_batch_idx == 18 and trainer.val_batch_idx == 6
    assert trainer.train_examples == 3 * 192
    assert all(not a.equal(b.cpu()) for a, b in zip(before, model.parameters(), strict=True))
    board = model.board.data
    assert list(board) == ["train_loss", "val_loss", "val_acc"]
    assert [p.x for p in board["val_acc"]] == [1, 2, 3]
    assert len(board["train_loss"]) == 6  # two per epoch, each the mean of 3 batches
    assert all(0 <= p.y <= 1 for p in board["val_acc"])
    assert (tmp_path / "progress.png").read_bytes()[:4] == b"\x89PNG"
    err = capsys.readouterr().err
    if not torch.cuda.is_available():  # the book's num_gpus=1 on a CPU machine
        assert "num_gpus=1 asked for, 0 found; training on cpu" in err


def test_trainer_uses_the_models_own_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cell that overrides a step with add_to_class changes what fit does."""
    monkeypatch.chdir(tmp_path)
    calls: list[int] = []

    class Counting(d2l.LeNet):
        pass

    @d2l.add_to_class(Counting)
    def training_step(self, batch):  # type: ignore[no-untyped-def]
        calls.append(len(batch[-1]))
        return self.loss(self(*batch[:-1]), batch[-1])

    data = SyntheticData(n=64, batch_size=16)
    model = Counting(lr=0.1)
    model.apply_init([next(iter(data.get_dataloader(True)))[0]], d2l.init_cnn)
    d2l.Trainer(max_epochs=2).fit(model, data)
    assert calls == [16] * 6 and "train_loss" not in model.board.data


def test_gradient_clipping_bounds_the_global_norm() -> None:
    layer = nn.Linear(3, 2)
    layer.weight.grad = torch.full((2, 3), 10.0)
    layer.bias.grad = torch.full((2,), 10.0)
    d2l.Trainer(max_epochs=1, gradient_clip_val=1.0).clip_gradients(1.0, layer)
    norm = torch.cat([layer.weight.grad.flatten(), layer.bias.grad.flatten()]).norm()
    assert norm.item() == pytest.approx(1.0, rel=1e-6)
    layer.weight.grad = torch.full((2, 3), 0.01)
    layer.bias.grad = torch.full((2,), 0.01)
    d2l.Trainer(max_epochs=1).clip_gradients(1.0, layer)
    assert layer.weight.grad.eq(0.01).all()  # below the bound: untouched


def test_fashion_mnist_data_module(tiny_fashion_mnist: Path) -> None:
    data = d2l.FashionMNIST(batch_size=64, resize=(32, 32), data_dir=tiny_fashion_mnist)
    assert (len(data.train), len(data.val)) == (300, 100)
    image, label = data.train[0]
    assert image.shape == (1, 32, 32) and isinstance(label, int)
    X, y = next(iter(data.train_dataloader()))
    assert X.shape == (64, 1, 32, 32) and y.shape == (64,) and X.dtype == torch.float32
    assert len(data.val_dataloader()) == 2
    val_X, val_y = next(iter(data.val_dataloader()))  # in order: the first test images
    assert torch.allclose(val_X[0], data.val[0][0], atol=1e-6) and val_y[0] == data.val[0][1]
    assert data.text_labels([0, 9]) == ["t-shirt", "ankle boot"]


def english_lenet_cells(data_dir: Path, max_epochs: int) -> tuple[d2l.Trainer, d2l.LeNet]:
    """The English edition's training cell, at seed 0."""
    torch.manual_seed(0)
    trainer = d2l.Trainer(max_epochs=max_epochs, num_gpus=1)
    data = d2l.FashionMNIST(batch_size=128, data_dir=data_dir)
    model = d2l.LeNet(lr=0.1)
    model.apply_init([next(iter(data.get_dataloader(True)))[0]], d2l.init_cnn)
    trainer.fit(model, data)
    return trainer, model


def test_english_lenet_section_on_tiny_data(tiny_fashion_mnist: Path) -> None:
    trainer, model = english_lenet_cells(tiny_fashion_mnist, 2)
    assert trainer.num_train_batches == 3 and [p.x for p in model.board.data["val_acc"]] == [1, 2]


# -- the full chapter on the real data ------------------------------------------------


@pytest.mark.slow
@needs_real_data
def test_chinese_edition_lenet_reaches_the_books_accuracy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """d2l 1.0.3 with this code: test acc 0.77 after 10 epochs."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    train_iter, test_iter = d2l.load_data_fashion_mnist(batch_size=256, data_dir=REAL_DATA)
    assert len(train_iter) == 235 and len(test_iter) == 40
    d2l.train_ch6(book_lenet(), train_iter, test_iter, 10, 0.9, d2l.try_gpu())
    lines = capsys.readouterr().out.splitlines()
    test_acc = float(lines[-2].split("test acc ")[1])
    assert test_acc >= 0.74, lines


@pytest.mark.slow
@needs_real_data
def test_english_edition_lenet_reaches_the_books_accuracy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """d2l 1.0.3 with this code: validation acc about 0.73 after 10 epochs."""
    monkeypatch.chdir(tmp_path)
    _, model = english_lenet_cells(REAL_DATA, 10)
    val_acc = model.board.data["val_acc"]
    assert len(val_acc) == 10 and val_acc[-1].y >= 0.70, val_acc
    assert (tmp_path / "progress.png").exists()


def test_progress_board_redraws_in_place_in_a_notebook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, displayed: list[bytes]
) -> None:
    from cnnlab.compat.d2l import display

    monkeypatch.setattr(display, "in_notebook", lambda: True)
    monkeypatch.chdir(tmp_path)
    board = d2l.ProgressBoard(xlabel="epoch")
    for x in range(4):
        board.draw(x, torch.tensor(float(x)), "loss", every_n=2)
    assert [p.y for p in board.data["loss"]] == [0.5, 2.5]  # means of 2 raw points
    assert len(displayed) == 2 and all(png[:4] == b"\x89PNG" for png in displayed)
    assert not (tmp_path / "progress.png").exists()  # nothing written in a notebook


# -- the book's arguments, checked as the book's library would take them ----------------


@pytest.mark.parametrize(
    "resize", [32.5, "28", 0, -4, 10_000, (28,), (28, 28, 28), (28.0, 28), True, [0, 28]]
)
def test_a_resize_the_book_would_not_pass_is_refused_at_the_call(
    resize: object, tiny_fashion_mnist: Path
) -> None:
    with pytest.raises(
        ValueError,
        match="resize must be an int or a \\(height, width\\) pair of ints from 1 to 1024",
    ):
        d2l.load_data_fashion_mnist(8, resize=resize, data_dir=tiny_fashion_mnist)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="resize must be an int"):
        d2l.FashionMNIST(batch_size=8, resize=resize, data_dir=tiny_fashion_mnist)  # type: ignore[arg-type]


def test_train_ch6_with_no_epochs_returns_without_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    X, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16)
    net = book_lenet()
    d2l.train_ch6(net, loader, loader, 0, 0.9, "cpu")
    assert capsys.readouterr().out == "training on cpu\n"
    with pytest.raises(ValueError, match="num_epochs must be a whole number >= 0, got -1"):
        d2l.train_ch6(net, loader, loader, -1, 0.9, "cpu")


def test_a_non_finite_loss_stops_train_ch6_and_the_trainer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnlab.training.control import Diverged

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    X, y = torch.rand(48, 1, 28, 28), torch.randint(0, 10, (48,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16)
    # the first step's loss is a number; the update with lr nan makes the second's NaN
    with pytest.raises(
        Diverged,
        match=r"not a finite number in epoch 1, step 2 \(lr nan\)\. The learning rate itself",
    ):
        d2l.train_ch6(book_lenet(), loader, loader, 2, float("nan"), "cpu")
    model = d2l.LeNet(lr=float("nan"))
    data = SyntheticData()
    model.apply_init([next(iter(data.get_dataloader(True)))[0]], d2l.init_cnn)
    with pytest.raises(Diverged, match=r"not a finite number in epoch 1 \(lr nan\)"):
        d2l.Trainer(max_epochs=3).fit(model, data)


ARGUMENT = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_subnormal=False)
    | st.text(max_size=4)
    | st.lists(st.integers(-3, 40) | st.sampled_from([0.5, 28.0, 32.5]), max_size=3).map(tuple)
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch_size=ARGUMENT | st.integers(1, 64), resize=ARGUMENT | st.integers(1, 40))
def test_the_loaders_take_any_argument_or_refuse_it_in_a_sentence(
    tiny_fashion_mnist: Path, batch_size: object, resize: object
) -> None:
    """Both editions' loaders: a batch comes out, or a ValueError/CnnlabError says why."""
    from cnnlab.errors import CnnlabError

    for make in (
        lambda: d2l.load_data_fashion_mnist(batch_size, resize, data_dir=tiny_fashion_mnist)[0],  # type: ignore[arg-type]
        lambda: d2l.FashionMNIST(
            batch_size=batch_size,
            resize=resize,  # type: ignore[arg-type]
            data_dir=tiny_fashion_mnist,
        ).train_dataloader(),
    ):
        try:
            X, y = next(iter(make()))
        except (ValueError, CnnlabError) as e:
            assert str(e) and "\n" not in str(e)
            continue
        assert X.ndim == 4 and X.shape[0] == len(y) <= int(batch_size)  # type: ignore[call-overload]


def test_one_epoch_shows_its_val_acc_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = d2l.LeNet(lr=0.5)
    d2l.Trainer(max_epochs=1).fit(model, SyntheticData())
    axes = model.board.fig.axes[0]
    val_acc = next(line for line in axes.lines if line.get_label() == "val_acc")
    assert list(val_acc.get_xdata()) == [1] and val_acc.get_marker() == "o"  # a visible point
