import pytest
import torch

from cnnlab.errors import ConfigError
from cnnlab.models import (
    create_model,
    list_models,
    model_options,
    pool_before_activation,
    summarize,
)

# SPEC.md item 13: the book's shapes for one 1x28x28 input.
BOOK_SHAPES = [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (400,), (120,), (84,), (10,)]


def test_lenet_is_the_books() -> None:
    rows = summarize(create_model("lenet"))
    shapes = [r.output_shape for r in rows if r.name != "Sigmoid"]
    assert shapes == BOOK_SHAPES
    assert [r.name for r in rows].count("Sigmoid") == 4
    assert sum(r.params for r in rows) == 61_706
    assert sum(r.macs for r in rows) == 416_520


# Every registered model and its parameter count, as the README documents them.
PARAMETERS = {
    "lenet": 61_706,
    "lenet-max": 61_706,
    "lenet-relu": 61_706,
    "lenet-relu-max": 61_706,
    "lenet-bn": 62_158,
    # the Modern-CNN chapter's networks, for 1 input channel and 10 classes
    "alexnet": 46_764_746,
    "vgg11": 128_806_154,
    "vgg11-small": 43_093_322,
    "nin": 1_992_166,
    "googlenet": 5_977_530,
    "bnlenet": 44_878,
    "resnet18": 11_178_378,
    "densenet": 758_226,
}


def test_parameter_counts_are_documented() -> None:
    assert sorted(PARAMETERS) == list_models()
    for name, count in PARAMETERS.items():
        assert sum(p.numel() for p in create_model(name).parameters()) == count, name


def test_the_family_covers_the_exercise() -> None:
    model = create_model(
        "lenet",
        kernel=3,
        channels=(16, 32, 64),
        dense=(64,),
        dropout=0.2,
        activation="relu",
        pool="max",
        batch_norm=True,
    )
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model) == 3
    with pytest.raises(ConfigError, match="3 conv blocks with kernel 5 shrink a 28x28 image"):
        create_model("lenet", channels=(6, 16, 32))
    padded = summarize(create_model("lenet", channels=(6, 16, 32), pad_all=True))
    assert [r.output_shape for r in padded if r.name == "Conv2d"] == [
        (6, 28, 28),
        (16, 14, 14),
        (32, 7, 7),
    ]
    with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\), got 1.5"):
        create_model("lenet", dropout=1.5)


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains(name: str) -> None:
    torch.manual_seed(0)
    small = {"resize": 96} if "resize" in model_options(name) else {}  # quicker than 224
    model = create_model(name, **small)
    out = model(torch.rand(4, 1, 28, 28))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def test_bad_names_and_options() -> None:
    with pytest.raises(
        ConfigError, match="unknown model 'lenet9'; choose one of: alexnet, bnlenet"
    ):
        create_model("lenet9")
    with pytest.raises(
        ConfigError, match="has no option 'width'; its options are: activation, pool"
    ):
        create_model("lenet", width=3)
    with pytest.raises(
        ConfigError, match="unknown activation 'tanh'; choose one of: sigmoid, relu"
    ):
        create_model("lenet", activation="tanh")
    # the model checks its own options; the generic config only that each is a word
    with pytest.raises(ConfigError, match="unknown backend 'jax'; choose one of: torch, scratch"):
        create_model("lenet", backend="jax")


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("lenet-relu-max", {}),
        ("lenet-max", {}),
        ("lenet-relu-max", {"backend": "scratch"}),
        ("lenet", {"activation": "relu", "pool": "max", "batch_norm": True, "kernel": 3}),
    ],
)
def test_pooling_before_the_activation_is_the_same_network(name: str, options: dict) -> None:
    torch.manual_seed(0)
    model = create_model(name, **options).double()
    fast = pool_before_activation(model)
    assert fast is not model
    order = ", ".join(type(m).__name__ for m in fast)
    assert "ReLU, MaxPool2d" not in order and "Sigmoid, MaxPool2d" not in order
    assert sorted(map(id, fast)) == sorted(map(id, model))  # the same layers, shared
    assert fast.state_dict().keys() == model.state_dict().keys()
    x = torch.rand(8, 1, 28, 28, dtype=torch.float64)
    grads = []
    for net in (model, fast):
        net.zero_grad()
        out = net(x)
        out.logsumexp(1).sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in net.parameters()]))
    (out_a, grads_a), (out_b, grads_b) = grads
    torch.testing.assert_close(out_b, out_a, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    plain = create_model("lenet")  # average pooling: nothing to reorder
    assert pool_before_activation(plain) is plain
