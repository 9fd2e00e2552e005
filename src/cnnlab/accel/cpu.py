"""LeNet's conv -> activation -> pool blocks as one fused CPU kernel, forward and backward
(and batch norm -> ReLU -> max pool blocks as another: :class:`FusedNorm`, ``cpu_norm.c``;
and linear layers by cnnlab's own matrix product: :class:`FusedLinear`, ``cpu_dense.c``).

Eagerly, PyTorch runs such a block as six passes over the batch's activations (oneDNN's
convolution, the activation, the pooling, and their three gradients), each streaming a
tensor the size of the batch's feature maps out of the cache and back, and oneDNN's kernels
for convolutions with 1 or 6 input channels are far from the CPU's arithmetic rate. The C
kernel in ``cpu_block.c`` takes one image at a time through the whole block while its maps
sit in the core's cache, with every loop vectorised (see the file's header); docs/speed.md's
CPU section has the measurements.

The kernel is compiled at first use with the system's C compiler (``$CC``, else ``cc``)
into cnnlab's cache and loaded with ctypes: nothing to build at install time. Where it
cannot be built or loaded, training says so in one line and runs the eager loop.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from cnnlab import environ
from cnnlab.errors import ConfigError
from cnnlab.fsutil import atomic_write_bytes, user_cache
from cnnlab.logs import log

SOURCES = tuple(Path(__file__).with_name(f"cpu_{name}.c") for name in ("block", "norm", "dense"))
HEADERS = tuple(Path(__file__).with_name(f"cpu_{name}.h") for name in ("common", "vector"))
ACTIVATIONS = {nn.Sigmoid: 0, nn.ReLU: 1}
POOLS = {nn.AvgPool2d: 0, nn.MaxPool2d: 1}


class _Shape(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_long) for name in ("n", "c", "h", "w", "o", "k", "pad", "act", "pool")
    ]


class _NormShape(ctypes.Structure):
    _fields_ = [(name, ctypes.c_long) for name in ("n", "h", "w", "c")]


class _Product(ctypes.Structure):
    _fields_ = [(name, ctypes.c_long) for name in ("m", "n", "k", "ps", "pk", "qs", "cs")]


# The instruction sets the kernels are built for, by compiler flags: the machine's own
# (the default), the two x86-64 levels most machines have (AVX2 + FMA; AVX-512), and none
# named (the compiler's baseline: SSE2 on x86-64, NEON on aarch64). The C code sizes its
# vectors and register blocks from what the flags enable. CNNLAB_CPU_ISA picks one, so
# that one AVX-512 machine can build, test and measure all of them.
ISAS = {
    "native": ["-march=native"],
    "avx512": ["-march=x86-64-v4"],
    "avx2": ["-march=x86-64-v3"],
    "portable": [],
}


def isa() -> str:
    """The instruction set to build for: ``CNNLAB_CPU_ISA``, else ``native``."""
    name = environ.cpu_isa() or "native"
    if name not in ISAS:
        raise ConfigError(
            f"CNNLAB_CPU_ISA={name!r} is not a target the kernels build for: "
            f"choose one of {', '.join(ISAS)}, or unset it"
        )
    return name


SYMBOLS = (
    "cnnlab_block_forward",
    "cnnlab_block_backward",
    "cnnlab_block_kept",
    "cnnlab_norm_forward",
    "cnnlab_norm_backward",
    "cnnlab_product",
)
COMPILE_TIMEOUT_S = 120.0  # a compiler that takes longer is given up
STALE_BUILD_S = 3600.0  # a build directory this old was left by a killed process


def compile_library(
    sources: Sequence[Path], target: Path, flags: Sequence[str] = ("-march=native",)
) -> str | None:
    """Compile ``sources`` with ``flags`` into the shared library ``target``, with its
    SHA-256 beside it (``digest_file``); None, or why it failed. Without OpenMP (Apple's
    clang) the kernels build single-threaded; where the compiler does not know
    ``-march=native``, for its baseline. A compile that takes over a second says so; one
    that takes over ``COMPILE_TIMEOUT_S`` is given up."""
    compiler = environ.compiler() or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return "no C compiler found (install gcc, or set CC)"
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(target.parent)
    native = list(flags) == ISAS["native"]
    attempts = [[*flags, "-fopenmp"], [*flags]] + ([["-fopenmp"], []] if native else [])
    deadline = time.monotonic() + COMPILE_TIMEOUT_S
    with tempfile.TemporaryDirectory(prefix=".build-", dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        reason = ""
        for extra in attempts:
            command = [
                compiler,
                "-O3",
                *extra,
                "-shared",
                "-fPIC",
                *map(str, sources),
                "-o",
                str(out),
            ]
            try:
                code, stderr = _run(command, deadline)
            except OSError as e:
                return f"cannot run {compiler}: {e.strerror}"
            except subprocess.TimeoutExpired:
                return f"{compiler} did not finish within {COMPILE_TIMEOUT_S:g} s"
            if code == 0:
                digest = _sha256(out)
                os.replace(out, target)  # atomic: a concurrent build finds a whole file
                atomic_write_bytes(digest_file(target), digest.encode())
                return None
            reason = (stderr.strip().splitlines() or [f"exit {code}"])[-1]
        return f"{compiler} failed: {reason}"


def _run(command: list[str], deadline: float) -> tuple[int, str]:
    """Run ``command`` until ``deadline``; after a second, say that the kernels are being
    built (the first CPU training run on a machine waits for it). Past the deadline the
    compiler is killed with every process it started (gcc's cc1 and as, a wrapper's own),
    so none keeps its output open and the build waits no longer."""
    with subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, to kill as a whole
    ) as process:
        try:
            _, stderr = process.communicate(timeout=1.0)
        except subprocess.TimeoutExpired:
            log.info("building the fused CPU kernels for this machine (once) ...")
            try:
                _, stderr = process.communicate(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                raise
        return process.returncode, stderr


def _remove_stale_builds(directory: Path) -> None:
    """Build directories left by a process killed while compiling."""
    for build_dir in directory.glob(".build-*"):
        try:
            if time.time() - build_dir.stat().st_mtime > STALE_BUILD_S:
                shutil.rmtree(build_dir)
        except OSError:
            pass  # another process's, or already gone


def digest_file(library_file: Path) -> Path:
    """Where a built library's SHA-256 is kept: beside it."""
    return library_file.with_name(library_file.name + ".sha256")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load(target: Path, again: bool = False) -> tuple[ctypes.CDLL | None, str]:
    """The library ``target``, or None and what is wrong with it. Its bytes are checked
    against the digest written when it was built before it is loaded: a file cut short
    or replaced would crash the process inside the loader (SIGBUS), not raise. ``again``:
    a file of this name was loaded before and rejected; the loader would hand back that
    one for the same path, so the new file is named differently (``dir/./name``)."""
    try:
        expected = digest_file(target).read_text().strip()
        actual = _sha256(target)
    except OSError as e:
        return None, f"cannot read it or its digest: {e.strerror}"
    if actual != expected:
        return None, "its bytes differ from those built (cut short or replaced)"
    try:
        lib = ctypes.CDLL(os.path.join(target.parent, ".", target.name) if again else str(target))
    except OSError as e:
        return None, f"it does not load: {e}"
    missing = [name for name in SYMBOLS if not hasattr(lib, name)]
    if missing:
        return None, f"it lacks {missing[0]} (not cnnlab's kernels)"
    return lib, ""


def library(target: str | None = None) -> ctypes.CDLL | None:
    """The compiled kernels for ``target`` (default: :func:`isa`), built on first use; None
    (and a one-line notice) where they cannot be built or loaded."""
    return _library(target or isa())


def build() -> str:
    """The kernels' build for :func:`isa`: its instruction set and a digest of the sources,
    the machine and the flags (the cached library's name)."""
    return _build(isa())


@cache
def _build(name: str) -> str:
    code = b"".join(source.read_bytes() for source in (*SOURCES, *HEADERS))
    key = hashlib.sha256(
        code
        + platform.machine().encode()
        + platform.node().encode()
        + " ".join(ISAS[name]).encode()
    )
    return f"{name}-{key.hexdigest()[:16]}"


@cache
def _library(name: str) -> ctypes.CDLL | None:
    target = user_cache() / "kernels" / f"cpu_block-{_build(name)}.so"
    lib, why, cached = None, "", target.exists()
    if cached and digest_file(target).exists():  # without one: an older cnnlab's, rebuilt
        lib, damage = _load(target)
        if lib is None:
            log.warning(
                "the cached CPU kernels %s are damaged: %s; building them again", target, damage
            )
    if lib is None:
        try:
            why = compile_library(SOURCES, target, ISAS[name]) or ""
        except OSError as e:  # e.g. a read-only cache
            why = f"cannot build in {target.parent}: {e.strerror}"
        if not why:
            lib, damage = _load(target, again=cached)
            why = f"{target} was built but {damage}" if lib is None else ""
    if lib is None:
        log.warning("the fused CPU kernels are off (%s); training runs the eager layers", why)
        return None
    pointer, shape, threads = ctypes.c_void_p, ctypes.POINTER(_Shape), ctypes.c_long
    lib.cnnlab_block_forward.argtypes = [*[pointer] * 5, shape, threads]
    lib.cnnlab_block_backward.argtypes = [*[pointer] * 7, shape, threads]
    lib.cnnlab_block_kept.argtypes = [shape]
    lib.cnnlab_block_kept.restype = ctypes.c_long
    norm = ctypes.POINTER(_NormShape)
    lib.cnnlab_norm_forward.argtypes = [
        *[pointer] * 3,
        ctypes.c_double,
        *[pointer] * 5,
        norm,
        threads,
    ]
    lib.cnnlab_norm_backward.argtypes = [*[pointer] * 10, norm, threads]
    lib.cnnlab_product.argtypes = [*[pointer] * 4, ctypes.POINTER(_Product), threads]
    lib.cnnlab_product.restype = None
    for kernel in ("block_forward", "block_backward", "norm_forward", "norm_backward"):
        getattr(lib, f"cnnlab_{kernel}").restype = ctypes.c_int  # 0, or out of memory
    return lib


def _checked(status: int) -> None:
    """A kernel's status: 0, or it could not allocate its working memory."""
    if status != 0:
        raise MemoryError(
            "the fused CPU kernel could not allocate its working memory: use a "
            "smaller --batch-size, or --no-fast for PyTorch's layers"
        )


def _pointer(tensor: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(None if tensor is None else tensor.data_ptr())


def _shape(x: torch.Tensor, weight: torch.Tensor, pad: int, act: int, pool: int) -> _Shape:
    n, c, h, w = x.shape
    return _Shape(n, c, h, w, weight.shape[0], weight.shape[2], pad, act, pool)


class BlockFunction(torch.autograd.Function):
    """pool(act(conv2d(x, weight, bias, padding=pad)), 2) for float32 CPU tensors, with
    act 0 sigmoid, 1 ReLU and pool 0 average, 1 maximum, by the kernels ``lib``. ``keep``:
    keep the activations for a backward (off where none will follow: evaluating,
    predicting)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        pad: int,
        act: int,
        pool: int,
        keep: bool,
        lib: ctypes.CDLL,
    ) -> torch.Tensor:
        x, weight, bias = x.contiguous(), weight.contiguous(), bias.contiguous()
        n, _, h, w = x.shape
        k = weight.shape[2]
        ho, wo = h + 2 * pad - k + 1, w + 2 * pad - k + 1
        shape = _shape(x, weight, pad, act, pool)
        y = x.new_empty(n, weight.shape[0], ho // 2, wo // 2)
        kept = x.new_empty(lib.cnnlab_block_kept(ctypes.byref(shape))) if keep else None
        _checked(
            lib.cnnlab_block_forward(
                _pointer(x),
                _pointer(weight),
                _pointer(bias),
                _pointer(y),
                _pointer(kept),
                ctypes.byref(shape),
                torch.get_num_threads(),
            )
        )
        ctx.save_for_backward(x, weight, kept)
        ctx.shape, ctx.lib = shape, lib
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        x, weight, kept = ctx.saved_tensors
        grad = grad.contiguous()
        gx = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        gw, gb = torch.empty_like(weight), weight.new_empty(weight.shape[0])
        _checked(
            ctx.lib.cnnlab_block_backward(
                _pointer(x),
                _pointer(weight),
                _pointer(kept),
                _pointer(grad),
                _pointer(gx),
                _pointer(gw),
                _pointer(gb),
                ctypes.byref(ctx.shape),
                torch.get_num_threads(),
            )
        )
        return gx, gw, gb, None, None, None, None, None


def _kernel_takes(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Float32 input and weight on the CPU: what the kernels compute (a model turned to
    float64 after fusing, or moved to a GPU, runs its own layers)."""
    return x.dtype == torch.float32 and x.device.type == "cpu" and weight.dtype == torch.float32


class FusedBlock(nn.Module):
    """A conv -> activation -> pool block of a model, run by the fused kernels ``lib``
    (float32 on a CPU; anything else by the layers themselves); it holds the model's own
    layers (the weights are shared, not copied)."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module, pool: nn.Module, lib: ctypes.CDLL) -> None:
        super().__init__()
        self.layers = nn.Sequential(conv, act, pool)
        self.kinds = ACTIVATIONS[type(act)], POOLS[type(pool)]
        self.lib = (
            lib  # the build it was fused (and timed) with, whatever the environment says later
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.layers[0]
        if not _kernel_takes(x, cast(torch.Tensor, conv.weight)):
            return self.layers(x)  # type: ignore[no-any-return]
        y: torch.Tensor = BlockFunction.apply(  # type: ignore[no-untyped-call]
            x,
            conv.weight,
            conv.bias,
            int(conv.padding[0]),  # type: ignore[index]
            *self.kinds,
            torch.is_grad_enabled() and any(t.requires_grad for t in (x, conv.weight, conv.bias)),
            self.lib,
        )
        return y


def _product(
    lib: ctypes.CDLL, p: torch.Tensor, q: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """p @ q (+ bias on every row) by the kernel: p any 2-D view, q with contiguous rows."""
    (m, k), n = p.shape, q.shape[1]
    c = q.new_empty(m, n)
    shape = _Product(m, n, k, p.stride(0), p.stride(1), q.stride(0), n)
    lib.cnnlab_product(
        _pointer(p),
        _pointer(q),
        _pointer(bias),
        _pointer(c),
        ctypes.byref(shape),
        torch.get_num_threads(),
    )
    return c


class LinearFunction(torch.autograd.Function):
    """x @ weight.T + bias for 2-D float32 CPU tensors, forward and backward each by the
    kernels' matrix product ``lib`` (bias may be None)."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lib: ctypes.CDLL
    ) -> torch.Tensor:
        x, weight = x.contiguous(), weight.contiguous()
        y = _product(lib, x, weight.t().contiguous(), None if bias is None else bias.contiguous())
        ctx.save_for_backward(x, weight)
        ctx.lib = lib
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        gx, gw, gb = None, None, None
        if ctx.needs_input_grad[0]:
            gx = _product(ctx.lib, grad, weight)
        if ctx.needs_input_grad[1]:
            gw = _product(ctx.lib, grad.t(), x)
        if ctx.needs_input_grad[2]:
            gb = grad.sum(0)
        return gx, gw, gb, None


class FusedLinear(nn.Module):
    """A model's ``nn.Linear`` (shared, not copied) run by the kernels' matrix product
    ``lib`` on 2-D float32 CPU input outside autocast; anything else by the layer."""

    def __init__(self, linear: nn.Linear, lib: ctypes.CDLL) -> None:
        super().__init__()
        self.layer = linear
        self.lib = lib  # as FusedBlock's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.layer.weight
        if x.dim() != 2 or not _kernel_takes(x, weight) or torch.is_autocast_enabled("cpu"):
            return self.layer(x)  # type: ignore[no-any-return]
        y: torch.Tensor = LinearFunction.apply(x, weight, self.layer.bias, self.lib)  # type: ignore[no-untyped-call]
        return y


LINEAR_MAX_WEIGHTS = 1 << 20  # larger layers stay with PyTorch's (MKL's) blocked products


def fusable_linear(layer: nn.Module) -> bool:
    """Whether the matrix product kernel runs this layer: a float32 torch ``nn.Linear`` of
    at most ``LINEAR_MAX_WEIGHTS`` weights (the kernel streams the weights from cache for
    every row block; LeNet's largest has 48,000, AlexNet's 26 million)."""
    return (
        type(layer) is nn.Linear
        and layer.weight.dtype == torch.float32
        and layer.weight.numel() <= LINEAR_MAX_WEIGHTS
    )


def _rows(x: torch.Tensor) -> torch.Tensor:
    """The channels-last rows (n, h, w, c) of an (n, c, h, w) tensor, copied only if they
    are not already laid out so."""
    return x.permute(0, 2, 3, 1).contiguous()


class NormFunction(torch.autograd.Function):
    """relu(max_pool2d(batch_norm(x, weight, bias, training=True, eps=eps), 2)) for float32
    CPU tensors; returns it (channels-last) with the batch's mean and biased variance."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        eps: float,
        lib: ctypes.CDLL,
    ) -> tuple[torch.Tensor, ...]:
        n, c, h, w = x.shape
        rows, weight, bias = _rows(x), weight.contiguous(), bias.contiguous()
        shape = _NormShape(n, h, w, c)
        y = x.new_empty(n, h // 2, w // 2, c)
        arg = torch.empty(y.shape, dtype=torch.uint8)
        mean, var, invstd = x.new_empty(3, c)
        _checked(
            lib.cnnlab_norm_forward(
                _pointer(rows),
                _pointer(weight),
                _pointer(bias),
                eps,
                _pointer(y),
                _pointer(arg),
                _pointer(mean),
                _pointer(var),
                _pointer(invstd),
                ctypes.byref(shape),
                torch.get_num_threads(),
            )
        )
        ctx.save_for_backward(rows, weight, arg, mean, invstd, y)
        ctx.shape, ctx.lib = shape, lib
        ctx.mark_non_differentiable(mean, var)
        return y.permute(0, 3, 1, 2), mean, var

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, *_: Any) -> tuple[Any, ...]:
        rows, weight, arg, mean, invstd, y = ctx.saved_tensors
        gy = _rows(grad)
        gx, gw, gb = torch.empty_like(rows), torch.empty_like(weight), torch.empty_like(weight)
        _checked(
            ctx.lib.cnnlab_norm_backward(
                _pointer(rows),
                _pointer(weight),
                _pointer(arg),
                _pointer(mean),
                _pointer(invstd),
                _pointer(y),
                _pointer(gy),
                _pointer(gx),
                _pointer(gw),
                _pointer(gb),
                ctypes.byref(ctx.shape),
                torch.get_num_threads(),
            )
        )
        return gx.permute(0, 3, 1, 2), gw, gb, None, None


class FusedNorm(nn.Module):
    """A batch norm -> ReLU -> 2x2 max pool block (the pool and ReLU in either order) run
    by the fused kernel while training on float32 CPU tensors, the running statistics
    updated as ``nn.BatchNorm2d`` does; in eval mode (the batch norm's), or on anything
    else, by the layers."""

    def __init__(
        self, norm: nn.BatchNorm2d, act: nn.Module, pool: nn.Module, lib: ctypes.CDLL
    ) -> None:
        super().__init__()
        relu, pool = (act, pool) if isinstance(act, nn.ReLU) else (pool, act)
        self.layers = nn.Sequential(norm, pool, relu)  # pooling first: a quarter of the ReLUs
        self.lib = lib  # as FusedBlock's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = cast(nn.BatchNorm2d, self.layers[0])
        # the layer's mode, not this wrapper's: the trainer sets the model's own modules to
        # training, which reaches the shared layers but not the wrappers around them
        if not norm.training or x.dtype != torch.float32 or x.device.type != "cpu":
            return self.layers(x)  # type: ignore[no-any-return]
        y, mean, var = NormFunction.apply(x, norm.weight, norm.bias, norm.eps, self.lib)  # type: ignore[no-untyped-call]
        running, batches = (norm.running_mean, norm.running_var), norm.num_batches_tracked
        if running[0] is not None and running[1] is not None and batches is not None:
            with torch.no_grad():
                batches.add_(1)
                momentum = norm.momentum
                if momentum is None:  # a cumulative average
                    momentum = 1 / float(batches)
                count = x.numel() // x.shape[1]
                running[0].lerp_(mean, momentum)
                running[1].lerp_(var * count / max(count - 1, 1), momentum)  # unbiased
        return y  # type: ignore[no-any-return]


def fusable_norm(norm: nn.Module, act: nn.Module, pool: nn.Module) -> bool:
    """Whether the norm kernel computes exactly these three layers: an affine float32
    ``nn.BatchNorm2d`` of a multiple of 8 channels, then a ReLU and a 2x2 max pooling with
    stride 2 and no padding, in either order (ReLU commutes with a maximum)."""
    if type(act) is nn.MaxPool2d and type(pool) is nn.ReLU:
        act, pool = pool, act
    return (
        type(norm) is nn.BatchNorm2d
        and norm.affine
        and norm.num_features % 8 == 0
        and norm.weight.dtype == torch.float32
        and type(act) is nn.ReLU
        and type(pool) is nn.MaxPool2d
        and _pools_2x2(pool)
    )


def _pools_2x2(pool: nn.Module) -> bool:
    """2x2 windows, stride 2, no padding (nor ceil mode, dilation, divisor or indices)."""
    ok = (
        pool.kernel_size in (2, (2, 2))
        and pool.stride in (2, (2, 2))
        and pool.padding in (0, (0, 0))
        and not pool.ceil_mode
    )
    if isinstance(pool, nn.AvgPool2d):
        return ok and pool.divisor_override is None
    return ok and pool.dilation in (1, (1, 1)) and not pool.return_indices


def fusable(conv: nn.Module, act: nn.Module, pool: nn.Module) -> bool:
    """Whether the kernel computes exactly these three layers: a float32 torch Conv2d
    (stride 1, square kernel, equal zero padding, a bias), a sigmoid or ReLU, and 2x2
    pooling with stride 2 and no padding."""
    if type(conv) is not nn.Conv2d or type(act) not in ACTIVATIONS or type(pool) not in POOLS:
        return False
    k, pad = conv.kernel_size, conv.padding
    return (
        _pools_2x2(pool)
        and conv.bias is not None
        and conv.weight.dtype == torch.float32
        and k[0] == k[1]
        and isinstance(pad, tuple)
        and pad[0] == pad[1]
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def fuse_layers(model: nn.Module, target: str | None = None) -> nn.Module:
    """``model`` itself, or, where it is a Sequential with fusable conv -> activation ->
    pool or batch norm -> ReLU -> max pool triples or linear layers and the kernels for
    ``target`` (default: :func:`isa`, read now) are available, a Sequential of the same
    layers (shared, not copied) with each triple run by one :class:`FusedBlock` or
    :class:`FusedNorm` and each linear layer by a :class:`FusedLinear`, which keep calling
    the kernels of that target."""
    if not isinstance(model, nn.Sequential):
        return model
    modules, fused, i = list(model), dict[int, tuple[type[nn.Module], int]](), 0
    while i < len(modules):  # triples do not overlap: the first fusable one is taken
        triple = modules[i : i + 3]
        if len(triple) == 3 and fusable(*triple):
            fused[i] = FusedBlock, 3
        elif len(triple) == 3 and fusable_norm(*triple):
            fused[i] = FusedNorm, 3
        elif fusable_linear(modules[i]):
            fused[i] = FusedLinear, 1
        i += fused[i][1] if i in fused else 1
    lib = _library(target or isa()) if fused else None
    if lib is None:
        return model
    out, i = list[nn.Module](), 0
    while i < len(modules):
        kind, size = fused.get(i, (None, 1))
        out.append(modules[i] if kind is None else kind(*modules[i : i + size], lib))
        i += size
    return nn.Sequential(*out)
