"""The fused CPU blocks (accel.cpu): the same function and gradients as torch's layers."""

from __future__ import annotations

import ctypes.util
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cnnlab.accel import cpu
from cnnlab.accel.cpu import (
    BlockFunction,
    FusedBlock,
    FusedLinear,
    FusedNorm,
    LinearFunction,
    NormFunction,
    fuse_layers,
)
from cnnlab.models import create_model
from cnnlab.training.recipes import RECIPES
from tests.ops.helpers import assert_matches_torch

pytestmark = [
    pytest.mark.skipif(
        shutil.which("cc") is None and shutil.which("gcc") is None, reason="needs a C compiler"
    ),
    pytest.mark.e2e,  # builds the kernels for each target, in processes of their own too
]


def reference(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, pad: int, act: int, pool: int
) -> torch.Tensor:
    z = F.conv2d(x, w, b, padding=pad)
    z = torch.relu(z) if act else torch.sigmoid(z)
    return F.max_pool2d(z, 2) if pool else F.avg_pool2d(z, 2)


def fused(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, pad: int, act: int, pool: int
) -> torch.Tensor:
    return BlockFunction.apply(x, w, b, pad, act, pool, True, cpu.library())  # type: ignore[no-untyped-call,no-any-return]


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {
        flag
        for line in text.splitlines()
        if line.startswith("flags")
        for flag in line.split(":", 1)[1].split()
    }


# The instruction sets the kernels build for that this machine runs (an AVX-512 CPU runs
# all the x86 ones; cpu.ISAS), each with its own vector width and register blocking.
NEEDS = {
    "avx2": {"avx2", "fma", "bmi2"},
    "avx512": {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"},
}
TARGETS = ["native", "portable"] + [
    name for name, flags in NEEDS.items() if platform.machine() == "x86_64" and flags <= cpu_flags()
]


@contextmanager
def target(isa: str) -> Iterator[None]:
    """The kernels built for ``isa`` (``CNNLAB_CPU_ISA``) inside the block."""
    before = os.environ.get("CNNLAB_CPU_ISA")
    os.environ["CNNLAB_CPU_ISA"] = isa
    try:
        assert cpu.library() is not None
        yield
    finally:
        if before is None:
            del os.environ["CNNLAB_CPU_ISA"]
        else:
            os.environ["CNNLAB_CPU_ISA"] = before


# The kernels take images 16 (AVX-512), 8 (AVX2) or 4 (portable) to a vector: a few images
# leave most lanes empty, 15-20 fill a group of each width and leave a part-filled one,
# over two threads; up to 7 input maps and 9 output maps leave part of a register block.
BLOCKS = {
    "n": st.one_of(st.integers(1, 3), st.integers(15, 20)),
    "c": st.integers(1, 7),
    "o": st.one_of(st.integers(1, 9), st.just(16), st.just(32)),
    "k": st.integers(1, 5),
    "pad": st.integers(0, 2),
    "h": st.integers(0, 12),
    "w": st.integers(0, 12),
    "act": st.sampled_from([0, 1]),
    "pool": st.sampled_from([0, 1]),
    "seed": st.integers(0, 2**16),
}


def block_inputs(
    n: int, c: int, o: int, k: int, pad: int, h: int, w: int, seed: int, act: int = 0
) -> list[torch.Tensor]:
    """Random input, weights and bias. For ReLU (act 1) they are multiples of 1/16, so
    that every convolution sum is exact in float32 whatever its order: a sum within
    rounding of zero would otherwise pass the ReLU in one computation and not in the
    other (found at n=18, c=3, o=32, k=5, pad=2, seed=281: one output's gradient)."""
    h, w = h + max(1, k + 1 - 2 * pad), w + max(1, k + 1 - 2 * pad)  # at least a 2x2 map
    generator = torch.Generator().manual_seed(seed)
    tensors = [
        torch.randn(n, c, h, w, generator=generator),
        torch.randn(o, c, k, k, generator=generator) / k,
        torch.randn(o, generator=generator),
    ]
    return [(t * 16).round() / 16 for t in tensors] if act else tensors


@pytest.mark.parametrize("isa", TARGETS)
@settings(max_examples=60, deadline=None)
@given(**BLOCKS)
def test_block_matches_torch_in_values_and_gradients(
    isa, n, c, o, k, pad, h, w, act, pool, seed
) -> None:  # type: ignore[no-untyped-def]
    with target(isa):
        assert_matches_torch(
            lambda *t: fused(*t, pad, act, pool),
            lambda *t: reference(*t, pad, act, pool),
            block_inputs(n, c, o, k, pad, h, w, seed, act),
        )


# The matrix product takes tiles of 6 rows by 2 (AVX2, portable) or 4 (AVX-512) vectors of
# 4, 8 or 16 columns: rows and columns on both sides of a tile's and a vector's edges, and
# inner sizes down to 1.
LINEARS = {
    "rows": st.one_of(st.integers(1, 7), st.integers(11, 13), st.just(256)),
    "inputs": st.integers(1, 70),
    "outputs": st.one_of(st.integers(1, 20), st.integers(63, 66), st.just(120)),
    "bias": st.booleans(),
    "seed": st.integers(0, 2**16),
}


def linear_inputs(
    rows: int, inputs: int, outputs: int, bias: bool, seed: int
) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, inputs, generator=generator)
    w = torch.randn(outputs, inputs, generator=generator) / inputs**0.5
    return [x, w] + ([torch.randn(outputs, generator=generator)] if bias else [])


@pytest.mark.parametrize("isa", TARGETS)
@settings(max_examples=40, deadline=None)
@given(**LINEARS)
def test_linear_matches_torch_in_values_and_gradients(
    isa, rows, inputs, outputs, bias, seed
) -> None:  # type: ignore[no-untyped-def]
    print(f"seed {seed}")
    with target(isa):
        lib = cpu.library()
        assert_matches_torch(
            lambda x, w, *b: LinearFunction.apply(x, w, b[0] if b else None, lib),  # type: ignore[no-untyped-call]
            lambda x, w, *b: F.linear(x, w, b[0] if b else None),
            linear_inputs(rows, inputs, outputs, bias, seed),
        )


def test_linear_results_do_not_depend_on_the_thread_count() -> None:
    """Every output is one thread's sum in order: 1 and 2 threads give the same bits."""
    x, w, b = (t.requires_grad_() for t in linear_inputs(256, 400, 120, True, seed=0))
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            y = LinearFunction.apply(x, w, b, cpu.library())  # type: ignore[no-untyped-call]
            gx, gw, gb = torch.autograd.grad(y, (x, w, b), torch.ones_like(y).cumsum(1))
            results.append([y.detach(), gx, gw, gb])
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        assert all(torch.equal(a, c) for a, c in zip(results[0], other, strict=True))


def test_a_fused_linear_hands_what_the_kernel_does_not_take_to_the_layer() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(5, 3)
    fused = FusedLinear(layer, cpu.library())  # type: ignore[arg-type]
    batched = torch.randn(2, 4, 5)  # more than two dimensions
    assert torch.equal(fused(batched), layer(batched))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = torch.randn(4, 5)
        assert fused(x).dtype == torch.bfloat16  # autocast's matrix product, as the layer's
    big = nn.Sequential(nn.Flatten(), nn.Linear(2048, 1024))  # past LINEAR_MAX_WEIGHTS
    assert fuse_layers(big) is big
    double = nn.Sequential(nn.Linear(3, 2).double())
    assert fuse_layers(double) is double


@pytest.mark.parametrize("maps", [3, 16])
def test_max_pool_ties_send_the_gradient_where_torch_does(maps: int) -> None:
    """A 1x1 kernel of weight 0 makes every window a tie: torch picks the first maximum."""
    x = torch.randn(2, 1, 6, 6)
    w, b = torch.zeros(maps, 1, 1, 1), torch.linspace(-2, 2, maps)
    for act in (0, 1):
        assert_matches_torch(
            lambda *t, a=act: fused(*t, 0, a, 1),
            lambda *t, a=act: reference(*t, 0, a, 1),
            [x, w, b],
        )


@pytest.mark.parametrize("maps", [6, 16])
def test_results_repeat_bit_for_bit(maps: int) -> None:
    torch.manual_seed(0)
    x, w, b = torch.randn(64, 6, 14, 14), torch.randn(maps, 6, 5, 5), torch.randn(maps)

    def once() -> list[torch.Tensor]:
        params = [t.clone().requires_grad_() for t in (x, w, b)]
        y = fused(*params, 0, 0, 0)
        y.backward(torch.ones_like(y))
        return [y, *(t.grad for t in params)]  # type: ignore[misc]

    first, second = once(), once()
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


class KeptPointers:
    """cnnlab's kernels, recording the pointer each block forward is given to keep its
    activations in (None: NULL)."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib, self.kept = lib, []

    def __getattr__(self, name: str) -> object:
        return getattr(self.lib, name)

    def cnnlab_block_forward(self, *args: ctypes.c_void_p) -> int:
        self.kept.append(args[4].value)
        return self.lib.cnnlab_block_forward(*args)  # type: ignore[no-any-return]


@pytest.mark.parametrize("isa", TARGETS)
def test_a_block_with_no_backward_to_follow_keeps_nothing_and_gives_the_same_output(
    isa: str,
) -> None:
    torch.manual_seed(0)
    x = torch.randn(20, 6, 14, 14)  # more images than a group of any width
    with target(isa):
        kernels = KeptPointers(cpu.library())  # type: ignore[arg-type]
        block = FusedBlock(nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2), kernels)  # type: ignore[arg-type]
        y = block(x)
        with torch.inference_mode():
            y_eval = block(x)
    assert kernels.kept[0] is not None and kernels.kept[1] is None
    assert y_eval.grad_fn is None
    assert torch.equal(y_eval, y.detach())


def norm_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    z = F.batch_norm(x, None, None, weight, bias, training=True, eps=1e-5)
    return F.max_pool2d(torch.relu(z), 2)


def norm_fused(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return NormFunction.apply(x, weight, bias, 1e-5, cpu.library())[0]  # type: ignore[no-untyped-call,no-any-return]


@pytest.mark.parametrize("isa", TARGETS)
@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 4),
    c=st.sampled_from([8, 16, 24]),
    h=st.integers(2, 13),
    w=st.integers(2, 13),
    channels_last=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_norm_block_matches_torch_in_values_and_gradients(
    isa, n, c, h, w, channels_last, seed
) -> None:  # type: ignore[no-untyped-def]
    """Odd sizes too: the last row or column then counts in the statistics but no window."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=generator) * 3 + 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(c, generator=generator)  # negative scales flip which value wins
    inputs = [x, weight, torch.randn(c, generator=generator)]
    with target(isa):
        assert_matches_torch(norm_fused, norm_reference, inputs)


def test_norm_block_ties_send_the_gradient_where_torch_does() -> None:
    """Each 2x2 window holds one value four times: torch's gradient goes to the first."""
    torch.manual_seed(0)
    x = torch.randn(3, 8, 3, 4).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert_matches_torch(norm_fused, norm_reference, [x, torch.randn(8), torch.randn(8)])


@pytest.mark.parametrize("momentum", [0.1, None])
def test_fused_norm_keeps_the_running_statistics_as_batch_norm_does(momentum) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    ours, theirs = (nn.BatchNorm2d(16, momentum=momentum) for _ in range(2))
    fused = FusedNorm(ours, nn.ReLU(), nn.MaxPool2d(2), cpu.library())  # type: ignore[arg-type]
    for _ in range(3):
        x = torch.randn(4, 16, 6, 6) * 2 + 3
        fused(x)
        theirs(x)
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 3
    torch.testing.assert_close(ours.running_mean, theirs.running_mean)
    torch.testing.assert_close(ours.running_var, theirs.running_var)
    fused.eval()  # evaluating: the running statistics, through the layers themselves
    x = torch.randn(2, 16, 6, 6)
    torch.testing.assert_close(
        fused(x), torch.relu(F.max_pool2d(ours.eval()(x), 2)), rtol=0, atol=0
    )


def test_norm_results_repeat_bit_for_bit() -> None:
    torch.manual_seed(0)
    x, weight, bias = torch.randn(64, 32, 12, 12), torch.randn(32), torch.randn(32)

    def once() -> list[torch.Tensor]:
        params = [t.clone().requires_grad_() for t in (x, weight, bias)]
        y = norm_fused(*params)
        y.backward(torch.ones_like(y))
        return [y, *(t.grad for t in params)]  # type: ignore[misc]

    first, second = once(), once()
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


# Shapes no machine can hold the working memory of (a padded plane of 2**60 floats), with
# no images, so that the tensors torch allocates are empty and only the kernel's fail.
HUGE = 2**30


def test_a_block_whose_working_memory_cannot_be_had_raises_memory_error() -> None:
    x = torch.empty(0, 1, HUGE, HUGE)
    w, b = torch.randn(6, 1, 5, 5), torch.zeros(6)
    with pytest.raises(MemoryError, match="smaller --batch-size, or --no-fast"):
        fused(x, w, b, 2, 0, 0)
    lib = cpu.library()
    assert lib is not None
    shape = cpu._Shape(0, 1, HUGE, HUGE, 6, 5, 2, 0, 0)
    nothing, weights = ctypes.c_void_p(None), ctypes.c_void_p(w.data_ptr())  # read first
    status = lib.cnnlab_block_backward(nothing, weights, *[nothing] * 5, ctypes.byref(shape), 2)
    assert status == 1  # out of memory, said, not a crash


def test_a_norm_block_whose_working_memory_cannot_be_had_says_so() -> None:
    lib = cpu.library()
    assert lib is not None
    shape = cpu._NormShape(0, 2, 2, 2**60)  # per-thread sums of 2**61 doubles
    nothing = ctypes.c_void_p(None)
    assert (
        lib.cnnlab_norm_forward(*[nothing] * 3, 1e-5, *[nothing] * 5, ctypes.byref(shape), 2) == 1
    )
    assert lib.cnnlab_norm_backward(*[nothing] * 10, ctypes.byref(shape), 2) == 1
    with pytest.raises(MemoryError, match="could not allocate"):
        cpu._checked(1)


BEST = RECIPES["best"]["model_options"]  # the model of --recipe best


@pytest.mark.parametrize(
    ("name", "options", "blocks", "norms", "linears"),
    [
        ("lenet", {}, 2, 0, 3),
        ("lenet-relu-max", {}, 2, 0, 3),
        ("lenet-bn", {}, 0, 0, 3),
        ("lenet", BEST, 0, 3, 2),
    ],
)
def test_fuse_layers_runs_the_same_function_with_shared_weights(
    name: str, options: dict[str, object], blocks: int, norms: int, linears: int
) -> None:
    torch.manual_seed(0)
    model = create_model(name, **options)
    fast = fuse_layers(model)
    assert sum(isinstance(m, FusedBlock) for m in fast.modules()) == blocks
    assert sum(isinstance(m, FusedNorm) for m in fast.modules()) == norms
    assert sum(isinstance(m, FusedLinear) for m in fast.modules()) == linears
    assert {id(p) for p in fast.parameters()} == {id(p) for p in model.parameters()}
    x = torch.rand(8, 1, 28, 28)
    torch.testing.assert_close(fast(x), model(x), rtol=1e-5, atol=1e-6)
    fast(x).square().sum().backward()
    ours = [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]
    model.zero_grad()
    model(x).square().sum().backward()
    # float32 rounding, relative to the largest gradient (a conv bias before batch norm
    # has a true gradient of 0: both are rounding noise)
    scale = max(p.grad.abs().max().item() for p in model.parameters())  # type: ignore[union-attr]
    for a, p in zip(ours, model.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, rtol=1e-4, atol=max(1e-6, 1e-5 * scale))


def test_a_fused_model_turned_float64_runs_its_own_layers() -> None:
    torch.manual_seed(0)
    model = create_model("lenet")
    fast = fuse_layers(model).double()  # the weights are shared: model is float64 too
    assert isinstance(fast[0], FusedBlock) and model[0].weight.dtype == torch.float64
    x = torch.rand(4, 1, 28, 28, dtype=torch.float64)
    torch.testing.assert_close(fast(x), model(x), rtol=0, atol=0)


def test_layers_the_kernel_does_not_compute_stay_as_they_are() -> None:
    blocks = [
        nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(3)),
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AvgPool2d(2, ceil_mode=True)),
        nn.Sequential(nn.Conv2d(1, 2, (3, 1)), nn.ReLU(), nn.AvgPool2d(2)),
        nn.Sequential(nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2)),  # not 8 to a vector
        nn.Sequential(nn.BatchNorm2d(8, affine=False), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2)),
        nn.Sequential(nn.BatchNorm2d(8), nn.Sigmoid(), nn.MaxPool2d(2)),
    ]
    for model in blocks:
        assert fuse_layers(model) is model
    scratch = fuse_layers(create_model("lenet", backend="scratch"))  # its own convolutions
    assert not any(isinstance(m, FusedBlock) for m in scratch.modules())


def test_the_kernel_builds_into_an_empty_cache_and_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a fresh machine does on its first CPU training run."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cpu._library.cache_clear()
    try:
        assert cpu.library() is not None
        built, digest = sorted((tmp_path / "cnnlab" / "kernels").iterdir())
        assert built.name.startswith("cpu_block-") and built.suffix == ".so"
        assert digest == cpu.digest_file(built)
        assert digest.read_text() == hashlib.sha256(built.read_bytes()).hexdigest()
        model = create_model("lenet")
        assert isinstance(fuse_layers(model)[0], FusedBlock)
    finally:
        cpu._library.cache_clear()


@pytest.mark.parametrize("broken", ["compiler", "cache"])
def test_without_the_kernel_training_stays_eager_with_a_one_line_notice(
    broken: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No compiler (CC names a missing program), or a cache that cannot be written."""
    if broken == "compiler":
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing built yet
        monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    else:
        (tmp_path / "file").write_text("not a directory")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    # caplog listens at the root, where the CLI's own handler may have stopped cnnlab's lines
    monkeypatch.setattr(logging.getLogger("cnnlab"), "propagate", True)
    cpu._library.cache_clear()
    try:
        model = create_model("lenet")
        assert fuse_layers(model) is model
        notices = [r.getMessage() for r in caplog.records]
        assert len(notices) == 1 and "fused CPU kernels are off" in notices[0]
        assert ("no-such-cc" if broken == "compiler" else "cannot build in") in notices[0]
    finally:
        cpu._library.cache_clear()


LOAD = """
import logging, sys
logging.basicConfig(level=logging.WARNING, format="%(message)s")
from cnnlab.accel.cpu import FusedBlock, fuse_layers, library
from cnnlab.models import create_model
assert library() is not None
assert isinstance(fuse_layers(create_model("lenet"))[0], FusedBlock)
print("loaded")
"""


def load_in_a_new_process(cache: Path) -> subprocess.CompletedProcess[str]:
    """What a new ``cnnlab train`` does with the kernels in ``cache`` (a library loaded
    into this process stays mapped under its name, so damage is tried in fresh ones)."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    return subprocess.run(
        [sys.executable, "-c", LOAD], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "damage", ["truncated", "foreign", "foreign-with-digest", "other-architecture"]
)
def test_a_damaged_cached_kernel_is_rebuilt_with_a_notice_naming_it(
    damage: str, tmp_path: Path
) -> None:
    """A cut-short library crashed the loader with SIGBUS; a foreign one lacked the
    symbols; one for another architecture did not load. Each is now built again."""
    first = load_in_a_new_process(tmp_path)
    assert first.returncode == 0 and first.stdout == "loaded\n", first.stderr
    [built] = (tmp_path / "cnnlab" / "kernels").glob("*.so")
    good = built.read_bytes()
    if damage == "truncated":
        built.write_bytes(good[:20_000])
    elif damage.startswith("foreign"):
        built.write_bytes(Path(sys.executable).resolve().read_bytes()[:200_000])
        if damage == "foreign-with-digest":
            foreign = Path(ctypes.util.find_library("m") or "")
            libm = next(
                (p for p in (Path("/lib/x86_64-linux-gnu/libm.so.6"), foreign) if p.is_file()), None
            )
            if libm is None:
                pytest.skip("no libm file to stand in for a foreign library")
            built.write_bytes(libm.read_bytes())
    else:
        if shutil.which("aarch64-linux-gnu-gcc") is None:
            pytest.skip("needs aarch64-linux-gnu-gcc to make a library of another architecture")
        subprocess.run(
            [
                "aarch64-linux-gnu-gcc",
                "-O2",
                "-shared",
                "-fPIC",
                *map(str, cpu.SOURCES),
                "-o",
                str(built),
            ],
            check=True,
            capture_output=True,
        )
    if damage in ("foreign-with-digest", "other-architecture"):  # past the digest check
        cpu.digest_file(built).write_text(hashlib.sha256(built.read_bytes()).hexdigest())
    second = load_in_a_new_process(tmp_path)
    assert second.returncode == 0 and second.stdout == "loaded\n", second.stderr
    notices = second.stderr.strip().splitlines()
    assert len(notices) == 1 and str(built) in notices[0] and "building them again" in notices[0]
    assert built.read_bytes() == good  # the same build again


def test_a_cached_kernel_from_before_digests_is_rebuilt_quietly(tmp_path: Path) -> None:
    first = load_in_a_new_process(tmp_path)
    assert first.returncode == 0, first.stderr
    [built] = (tmp_path / "cnnlab" / "kernels").glob("*.so")
    cpu.digest_file(built).unlink()  # as an earlier cnnlab left it
    second = load_in_a_new_process(tmp_path)
    assert second.returncode == 0 and second.stdout == "loaded\n" and second.stderr == ""
    assert cpu.digest_file(built).read_text() == hashlib.sha256(built.read_bytes()).hexdigest()


def test_a_compiler_that_hangs_is_given_up_with_a_notice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stall = tmp_path / "stalling-cc"
    stall.write_text("#!/bin/sh\nsleep 60\n")
    stall.chmod(0o755)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("CC", str(stall))
    monkeypatch.setattr(cpu, "COMPILE_TIMEOUT_S", 2.5)
    monkeypatch.setattr(logging.getLogger("cnnlab"), "propagate", True)
    cpu._library.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger="cnnlab"):
            model = create_model("lenet")
            assert fuse_layers(model) is model  # eager
        lines = [r.getMessage() for r in caplog.records]
        assert any("building the fused CPU kernels" in line for line in lines)
        assert "did not finish within 2.5 s" in lines[-1] and "eager layers" in lines[-1]
        assert not list((tmp_path / "empty-cache" / "cnnlab" / "kernels").iterdir())  # no leftovers
    finally:
        cpu._library.cache_clear()


def test_stale_build_directories_are_removed(tmp_path: Path) -> None:
    old, fresh = tmp_path / ".build-old", tmp_path / ".build-fresh"
    for d in (old, fresh):
        d.mkdir()
        (d / "cpu_block.so").write_bytes(b"half")
    os.utime(old, (0, 0))
    cpu._remove_stale_builds(tmp_path)
    assert not old.exists() and fresh.exists()


# -- the kernels built for aarch64 (NEON) and run under qemu-user -------------------------

CROSS, EMULATOR = "aarch64-linux-gnu-gcc", "qemu-aarch64"


def cross_build(driver: str, out_dir: Path) -> Path:
    """tests/accel/``driver``.c with the kernels, cross-built for aarch64, static."""
    import subprocess

    if shutil.which(CROSS) is None or shutil.which(EMULATOR) is None:
        pytest.skip(f"needs {CROSS} and {EMULATOR} (Debian: gcc-aarch64-linux-gnu qemu-user)")
    out = out_dir / driver
    sources = [Path(__file__).with_name(f"{driver}.c"), *cpu.SOURCES]
    subprocess.run(
        [CROSS, "-O3", "-fopenmp", "-static", *map(str, sources), "-lm", "-o", str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def aarch64_driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cross_build("block_driver", tmp_path_factory.mktemp("aarch64"))


@pytest.fixture(scope="module")
def aarch64_product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cross_build("product_driver", tmp_path_factory.mktemp("aarch64"))


def emulated(
    driver: Path,
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor,
    gy: torch.Tensor,
    shape: tuple[int, ...],
) -> list[torch.Tensor]:
    """(y, gx, gw, gb) from the aarch64 build under qemu."""
    import subprocess

    import numpy as np

    header = np.array(shape, dtype=np.int64).tobytes()
    payload = b"".join(t.detach().contiguous().numpy().tobytes() for t in (x, w, b, gy))
    done = subprocess.run(
        [EMULATOR, str(driver)], input=header + payload, capture_output=True, check=True
    )
    values = torch.from_numpy(np.frombuffer(done.stdout, dtype=np.float32).copy())
    return list(values.split([gy.numel(), x.numel(), w.numel(), b.numel()]))


class Emulated(torch.autograd.Function):
    """The fused block as the aarch64 build computes it (forward and backward)."""

    @staticmethod
    def forward(ctx, x, w, b, pad, act, pool, driver):  # type: ignore[no-untyped-def]
        n, c, h, width = x.shape
        o, k = w.shape[0], w.shape[2]
        ho, wo = h + 2 * pad - k + 1, width + 2 * pad - k + 1
        ctx.shape, ctx.driver = (n, c, h, width, o, k, pad, act, pool), driver
        ctx.save_for_backward(x, w, b)
        gy = x.new_zeros(n, o, ho // 2, wo // 2)
        return emulated(driver, x, w, b, gy, ctx.shape)[0].view_as(gy)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        x, w, b = ctx.saved_tensors
        _, gx, gw, gb = emulated(ctx.driver, x, w, b, grad, ctx.shape)
        return gx.view_as(x), gw.view_as(w), gb, None, None, None, None


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(**BLOCKS)
def test_the_aarch64_build_matches_torch_under_qemu(
    aarch64_driver, n, c, o, k, pad, h, w, act, pool, seed
) -> None:  # type: ignore[no-untyped-def]
    assert_matches_torch(
        lambda *t: Emulated.apply(*t, pad, act, pool, aarch64_driver),
        lambda *t: reference(*t, pad, act, pool),
        block_inputs(n, c, o, k, pad, h, w, seed, act),
    )


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(**LINEARS, transposed=st.booleans())
def test_the_aarch64_matrix_product_matches_torch_under_qemu(
    aarch64_product, rows, inputs, outputs, bias, seed, transposed
) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    import numpy as np

    print(f"seed {seed}")
    x, w, *b = linear_inputs(rows, inputs, outputs, bias, seed)
    p, q = (x.t().contiguous() if transposed else x), w.t().contiguous()  # c = x w^T (+ b)
    header = np.array([rows, outputs, inputs, transposed, bias], dtype=np.int64).tobytes()
    payload = b"".join(t.numpy().tobytes() for t in (p, q, *b))
    done = subprocess.run(
        [EMULATOR, str(aarch64_product)], input=header + payload, capture_output=True, check=True
    )
    ours = torch.from_numpy(np.frombuffer(done.stdout, dtype=np.float32).copy())
    expected = F.linear(x, w, b[0] if b else None)
    torch.testing.assert_close(ours.view_as(expected), expected, rtol=1e-5, atol=1e-5)


def test_an_unknown_target_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnlab.errors import ConfigError

    monkeypatch.setenv("CNNLAB_CPU_ISA", "sse9")
    with pytest.raises(
        ConfigError,
        match=r"CNNLAB_CPU_ISA='sse9' is not a target .* native, avx512, avx2, portable",
    ):
        cpu.library()


def test_fused_blocks_keep_the_kernels_they_were_fused_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The build a run timed is the build it trains with: CNNLAB_CPU_ISA is read when the
    blocks are fused, and never again on a kernel call."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
    x = torch.randn(6, 1, 12, 12, requires_grad=True)
    monkeypatch.setenv("CNNLAB_CPU_ISA", "portable")
    fused = cpu.fuse_layers(model)
    portable = cpu._library("portable")
    assert isinstance(fused[0], FusedBlock) and fused[0].lib is portable
    monkeypatch.setenv("CNNLAB_CPU_ISA", "native")
    assert cpu.library() is not portable  # the environment now names another build
    looked_up: list[str] = []
    monkeypatch.setattr(cpu, "_library", lambda name: looked_up.append(name))
    monkeypatch.setattr(cpu, "library", lambda target=None: looked_up.append("library"))
    y = fused(x)
    y.sum().backward()  # type: ignore[no-untyped-call]
    assert looked_up == []  # forward and backward called the block's own kernels
    with torch.no_grad():
        expected = BlockFunction.apply(x, model[0].weight, model[0].bias, 2, 1, 1, False, portable)  # type: ignore[no-untyped-call]
    assert torch.equal(y.detach(), expected)
