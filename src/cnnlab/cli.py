"""The ``cnnlab`` command: train, lr-find, export, eval, predict, viz, report, explore,
animate, summary, shape, demo, sweep, data."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import functools
import inspect
import io
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnlab import environ
from cnnlab.errors import CnnlabError, ConfigError, DataError
from cnnlab.fsutil import atomic_write_bytes
from cnnlab.logs import ensure_logging, log, shown
from cnnlab.training.config import TrainConfig
from cnnlab.training.control import Interrupted


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, with its help and default, plus --recipe and
    --config. A flag left out stays out of the namespace, so the recipe and the config
    file can fill it in."""
    from cnnlab.training.recipes import RECIPES

    parser.add_argument(
        "--recipe",
        choices=list(RECIPES),
        default=argparse.SUPPRESS,
        help="starting point for every flag below: book (the chapter's, default) or best "
        "(a tuned 81k-parameter LeNet variant, 0.932 mean test accuracy; see docs/training.md)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE.toml",
        help='TOML file of flags by field name (e.g. lr = 0.1, recipe = "best"); flags given '
        "on the command line win over it, and it wins over the recipe",
    )
    groups = {
        False: parser.add_argument_group(
            "what is trained (a resumed run keeps these; --epochs may extend it)"
        ),
        True: parser.add_argument_group("how it runs (a resumed run may change these)"),
    }
    for f in dataclasses.fields(TrainConfig):
        group = groups[bool(f.metadata.get("launch"))]
        flag = "--" + f.name.replace("_", "-")
        help = f"{f.metadata['help']} (default: {f.default})".replace("%", "%%")
        if f.type in ("bool", bool, "bool | None"):
            action: Any = argparse.BooleanOptionalAction
            group.add_argument(flag, action=action, default=argparse.SUPPRESS, help=help)
            continue
        kind = {"int": int, "float": float}.get(str(f.type), str)
        group.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=help)


def _add_trust_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-model-file",
        action="store_true",
        help="run the model file (Python code) that someone else's run names; without it only "
        "registered models and files you trained with here are run (default: off)",
    )


def _add_device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps"
    )


def _add_offline_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--offline",
        action="store_true",
        default=None,  # unless CNNLAB_OFFLINE=1 says so
        help="never download a missing dataset (as CNNLAB_OFFLINE=1 does)",
    )


def train_config(args: argparse.Namespace) -> tuple[TrainConfig, set[str]]:
    """The config of ``cnnlab train``'s arguments (the flags given, then the --config
    file, then the recipe, then the defaults), and the fields the user set."""
    from cnnlab.fsutil import load_toml
    from cnnlab.training.recipes import RECIPES

    launcher = ("config", "command", "func")
    given = {k: v for k, v in vars(args).items() if k not in launcher}
    from_file = {}
    if args.config:
        values = load_toml(args.config, "config file")
        from_file = {k.replace("-", "_"): v for k, v in values.items()}
        if "resume" in from_file:
            raise ConfigError(
                f"{args.config}: resume is not a key a config file can set; "
                "give --resume RUN on the command line"
            )
        try:
            TrainConfig.from_dict(from_file)
        except (ConfigError, TypeError) as e:
            raise ConfigError(f"{args.config}: {e}") from None
    values = {**from_file, **given}
    recipe = RECIPES.get(values.get("recipe", "book"), {})
    return TrainConfig.from_dict(values), (set(values) | set(recipe)) - {"recipe"}


def cmd_train(args: argparse.Namespace) -> int:
    from cnnlab.training import train

    config, asked = train_config(args)
    train(config, asked)  # with --nproc N: through torchrun
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    from cnnlab.training.lr_find import IGNORED, PLOT, lr_find

    test = {k: vars(args).pop(k) for k in ("steps", "start_lr", "end_lr")}
    ignored = [k for k in IGNORED if k in vars(args)]  # flags given, not the recipe's
    if ignored:
        flags = ", ".join("--" + k.replace("_", "-") for k in ignored)
        raise ConfigError(
            f"lr-find does not use {flags}: it trains a copy of the model for --steps steps at "
            "rates from --start-lr to --end-lr, without a schedule, augmentation, checkpoints "
            "or an evaluation; drop them (they belong to `cnnlab train`)"
        )
    config, _ = train_config(args)
    result = lr_find(config, test["steps"], test["start_lr"], test["end_lr"], config.out_dir)
    if result.suggestion is None:
        log.info("%s", result.how)
    else:
        log.info("suggested lr %.3g: %s", result.suggestion, result.how)
        lr = float(f"{result.suggestion:.3g}")
        settings = dataclasses.replace(config, lr=lr, schedule="onecycle", out_dir=None)
        command = shlex.join(["cnnlab", "train", *settings.to_flags(("quiet", "offline"))])
        log.info("train with it (one-cycle up to that rate, as fastai does): %s", command)
    log.info(
        "tried %d learning rates from %.3g to %.3g; the curve is in %s",
        len(result.lrs),
        result.lrs[0],
        result.lrs[-1],
        result.out_dir / PLOT,
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from cnnlab.export import ONNX_EXTRA, export

    out = args.out or args.run_dir / f"model.{'onnx' if args.format == 'onnx' else 'pt'}"
    checked = export(
        args.run_dir,
        args.format,
        out,
        args.data_dir,
        trust=args.trust_model_file,
        offline=args.offline,
    )
    log.info("wrote %s (%s; preprocessing and classes in its metadata)", out, args.format)
    if args.format == "onnx" and checked is None:
        log.info("not checked: onnxruntime is not installed (%s)", ONNX_EXTRA)
    elif checked is not None:
        log.info(
            "onnxruntime against PyTorch on %d test images: max |logit difference| %.2e",
            checked[1],
            checked[0],
        )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from cnnlab.device import resolve_device
    from cnnlab.evaluation import evaluate_saved_run
    from cnnlab.training.metrics import accuracy, per_class_accuracy

    result = evaluate_saved_run(
        args.run_dir,
        args.data_dir,
        resolve_device(args.device),
        args.trust_model_file,
        progress=sys.stderr.isatty(),
        offline=args.offline,
    )
    meta, classes, confusion = result.meta, result.classes, result.confusion
    log.info(
        "test acc %.4f on %d %s test images%s",
        accuracy(confusion),
        len(result.test.labels),
        meta["dataset"],
        ", each averaged with its mirror (the run's --tta)" if meta.get("tta", False) else "",
    )
    log.info("%-14s %8s %8s", "class", "images", "acc")
    for name, total, acc in zip(
        classes, confusion.sum(dim=1), per_class_accuracy(confusion), strict=True
    ):
        log.info("%-14s %8d %8.3f", shown(name), total, acc)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from cnnlab.device import resolve_device
    from cnnlab.predict import load

    classifier = load(args.run_dir, resolve_device(args.device), args.trust_model_file)
    failed = 0
    for path in args.images:
        try:
            (prediction,) = classifier.predict([path], invert=args.invert)
        except DataError as e:  # the others are still classified
            print(f"error: {shown(e)}", file=sys.stderr)
            failed += 1
            continue
        ranked = ", ".join(f"{shown(name)} {p:.3f}" for name, p in prediction.ranked[: args.top])
        log.info("%s: %s", shown(path), ranked)
    return 1 if failed else 0


def cmd_summary(args: argparse.Namespace) -> int:
    from cnnlab.models import create_model, format_summary, parse_options, summarize
    from cnnlab.models.summary import book_lines, input_side

    if args.run is not None:
        args.model = str(args.run)
    if Path(args.model).is_dir():  # a run directory: its model, as it was trained
        from cnnlab.rundir import load_model

        model, meta = load_model(args.model, trust_model_file=args.trust_model_file)
        shape = tuple(meta["preprocessing"]["input_shape"])
    else:
        channels, height, width = _input_shape(args.input)
        options = parse_options(args.model, args.model_options)
        context = {"in_channels": channels, "image_size": (height, width)}
        model = create_model(args.model, **context, **options)
        shape = (channels, height, width)
    side = input_side(model)
    resized = f", resized to {side}x{side} on the device" if side else ""
    lines = book_lines(model, shape)
    book = "\nas the book's shape cell prints it:\n" + "\n".join(lines) + "\n" if lines else ""
    layers = format_summary(summarize(model, shape))
    log.info("%s, input %s%s%s\n%s", args.model, "x".join(map(str, shape)), resized, book, layers)
    return 0


def _input_shape(text: str) -> tuple[int, int, int]:
    """ "1x28x28" -> (1, 28, 28): channels 1 or 3, sides 1 to 1024."""
    try:
        values = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        values = ()
    if len(values) != 3 or values[0] not in (1, 3) or not all(1 <= v <= 1024 for v in values[1:]):
        raise ConfigError(f"--input must be CxHxW with C 1 or 3 (like 1x28x28), got {text!r}")
    return values[0], values[1], values[2]


def cmd_models(args: argparse.Namespace) -> int:
    from cnnlab.models import create_model, list_models, summarize
    from cnnlab.models.modern import BOOK_TRAINING
    from cnnlab.models.registry import registered, variant_of
    from cnnlab.models.summary import input_side, totals

    lines = [f"{'model':<15}{'params':>12}{'mult-adds':>15}{'input':>7}  what it is"]
    for name in list_models():
        model = create_model(name)
        params, macs = totals(summarize(model))
        base, options = variant_of(name)
        if base:
            what = f"{base} with " + " ".join(f"{k}={v}" for k, v in options.items())
        else:
            what = first_sentence(inspect.getdoc(registered(name)) or "")
        side = input_side(model) or 28
        lines.append(f"{name:<15}{params:>12,}{macs:>15,}{side:>7}  {what}")
    rates = ", ".join(f"{name} {values['lr']:g}" for name, values in BOOK_TRAINING.items())
    log.info(
        "%s\ninput: the side the network sees (the dataset's images are resized to it on the "
        "device; --model-options resize=N changes it). The Modern-CNN networks train as the "
        "book trains them unless told otherwise: batch size 128, 10 epochs, lr %s.\n"
        "Options of any of them: cnnlab train --model NAME --model-options 'KEY=VALUE ...'; "
        "see cnnlab summary --model NAME.",
        "\n".join(lines),
        rates,
    )
    return 0


def first_sentence(text: str) -> str:
    """A docstring's first sentence as plain text (reST's ``code`` marks dropped).

    >>> first_sentence("LeNet for ``in_channels`` inputs (1x28x28: the book's). More.")
    "LeNet for in_channels inputs (1x28x28: the book's)"
    """
    flat = " ".join(text.replace("``", "").split())
    return flat.split(". ")[0].removesuffix(".")


def _dims(text: str, name: str) -> tuple[int, int]:
    """ "5" -> (5, 5); "3x5" -> (3, 5)."""
    try:
        values = [int(v) for v in text.lower().split("x")]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise ConfigError(f"{name} must be N or HxW (like 5 or 3x5), got {text!r}")
    return (values[0], values[-1])


LAYER_KEYS = {"k": "kernel", "s": "stride", "p": "padding", "d": "dilation"}


def _layer(spec: str) -> Any:
    """ "conv,k=5,p=2" or "pool,k=2" (pooling's stride defaults to its kernel)."""
    from cnnlab.ops import Layer

    kind, *options = spec.split(",")
    values: dict[str, tuple[int, int]] = {}
    for option in options:
        key, _, value = option.partition("=")
        if key not in LAYER_KEYS or not value:
            raise ConfigError(
                f"bad layer option {option!r} in {spec!r}: use k=, s=, p=, d= "
                f"(kernel, stride, padding per side, dilation), like conv,k=5,p=2"
            )
        values[LAYER_KEYS[key]] = _dims(value, LAYER_KEYS[key])
    if kind not in ("conv", "pool") or "kernel" not in values:
        raise ConfigError(f"a layer is conv or pool with a kernel, like pool,k=2; got {spec!r}")
    if kind == "pool":
        values.setdefault("stride", values["kernel"])
    return Layer(kind, **values)


def cmd_shape(args: argparse.Namespace) -> int:
    from cnnlab.ops import Layer, trace

    size = _dims(args.input, "--input")
    if args.layer:
        layers = [_layer(spec) for spec in args.layer]
    else:
        names = ("kernel", "stride", "padding", "dilation")
        layers = [Layer("conv", *(_dims(getattr(args, k), "--" + k) for k in names))]
    try:
        steps = trace(size, layers)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not args.layer:
        print(f"{steps[0].size[0]}x{steps[0].size[1]}")
        return 0
    print(f"{'layer':<38}{'output':>9}{'receptive field':>17}{'jump':>7}")
    print(f"{'input':<38}{f'{size[0]}x{size[1]}':>9}{'1x1':>17}{'1x1':>7}")
    for s in steps:
        out = f"{s.size[0]}x{s.size[1]}"
        field, jump = f"{s.field_h.size}x{s.field_w.size}", f"{s.field_h.jump}x{s.field_w.jump}"
        print(f"{s.layer.describe():<38}{out:>9}{field:>17}{jump:>7}")
    return 0


DEMO_OPTIONS = ("kernel", "steps", "lr", "index", "data_dir")  # flags that some demos take


def cmd_demo(args: argparse.Namespace) -> int:
    import inspect

    from cnnlab.demos import DEMOS
    from cnnlab.viz import figure_bytes

    demo = DEMOS[args.name]
    accepted = inspect.signature(demo).parameters
    given = {k: v for k, v in vars(args).items() if k in DEMO_OPTIONS and v is not None}
    if "offline" in accepted:
        given["offline"] = args.offline
    wrong = sorted(set(given) - set(accepted))
    if wrong:
        flags = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise ConfigError(f"demo {args.name} takes no {flags}")
    try:
        result = demo(**given)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    print(result.text)
    if result.figure is not None:
        out = args.out or Path(f"{args.name}.png")
        fmt = out.suffix.lstrip(".") or "png"
        atomic_write_bytes(out, figure_bytes(result.figure, fmt))
        log.info("wrote %s", out)
    return 0


def cmd_animate(args: argparse.Namespace) -> int:
    from cnnlab.viz.animate import animate

    fmt = args.out.suffix.lstrip(".").lower()
    if fmt not in ("gif", "svg", "html"):
        raise ConfigError(f"-o {args.out}: write a .gif, .svg or .html file")
    channels = _dims(args.channels, "--channels")
    try:
        animation = animate(
            args.kind,
            _dims(args.input, "--input"),
            _dims(args.kernel, "--kernel"),
            _dims(args.padding, "--padding"),
            _dims(args.stride, "--stride") if args.stride else None,
            _dims(args.dilation, "--dilation"),
            channels,
            args.pool,
            args.values,
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None
    atomic_write_bytes(args.out, animation.to_bytes(fmt))
    count = len(animation.frames)
    log.info("wrote %s (%d frame%s)", args.out, count, "" if count == 1 else "s")
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    from cnnlab.rundir import EXPLORER
    from cnnlab.viz.explorer import explore_run

    out = args.out or args.run_dir / EXPLORER
    explorer = explore_run(
        args.run_dir, args.data_dir, args.images, args.trust_model_file, args.offline
    )
    page = explorer.html.encode()
    atomic_write_bytes(out, page)
    log.info("wrote %s (%.0f kB; open it in any browser, offline)", out, len(page) / 1e3)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from cnnlab.sweep import MAX_VARIANTS, markdown_table, sweep

    limit = MAX_VARIANTS if args.max_variants is None else args.max_variants
    rows = sweep(args.file, args.out_dir, args.jobs, limit)
    print(markdown_table(rows), end="")
    return 1 if any("error" in r for r in rows) else 0


def cmd_data(args: argparse.Namespace) -> int:
    from cnnlab.data import download, get_dataset
    from cnnlab.data.datasets import candidate_dirs, find_file, missing_files, read_verified

    if args.action == "sample":
        return data_sample(args)
    dataset = get_dataset(args.dataset)
    if args.action == "download":
        dest = Path(args.data_dir) if args.data_dir else None
        directory = download(dataset, dest, args.mirror or None, progress=sys.stderr.isatty())
        log.info("%s is ready in %s", dataset.name, directory)
        return 0
    if args.action == "status":
        for origin, directory in candidate_dirs(dataset, args.data_dir):
            missing = missing_files(directory, dataset)
            state = "complete" if not missing else f"missing {len(missing)} of 4 files"
            log.info("%-12s %-50s %s", origin, directory, state)
        return 0
    # verify: every file of the directory that would be used
    from cnnlab.data import locate

    directory = locate(dataset, args.data_dir, offline=environ.offline())
    bad = 0
    for resource in dataset.resources:
        try:
            read_verified(directory, resource)
            log.info("ok      %s", find_file(directory, resource))
        except CnnlabError as e:
            bad += 1
            print(f"error: {e}", file=sys.stderr)
    if bad:
        print(
            f"{bad} file(s) failed; delete them and run `{dataset.download_command}`",
            file=sys.stderr,
        )
    return 1 if bad else 0


def data_sample(args: argparse.Namespace) -> int:
    """`cnnlab data sample`: a test image of a dataset as a PNG file, to try predict on."""
    import re

    from PIL import Image

    from cnnlab.data.folder import load_splits

    _, test, classes, _ = load_splits(args.dataset, args.data_dir, offline=environ.offline())
    if not 0 <= args.index < len(test.labels):
        raise ConfigError(
            f"--index {args.index}: the test split has images 0 to {len(test.labels) - 1}"
        )
    label = classes[int(test.labels[args.index])]
    image = test.images[args.index]
    out = args.out or Path(f"{re.sub(r'[^A-Za-z0-9]+', '-', label).strip('-').lower()}.png")
    picture = Image.fromarray(image if image.ndim == 2 else image.transpose(1, 2, 0))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    atomic_write_bytes(out, buffer.getvalue())
    log.info("wrote %s: test image %d of %s (%s)", out, args.index, args.dataset, shown(label))
    return 0


def cmd_viz(args: argparse.Namespace) -> int:
    from cnnlab.report import RunView, inputs, make_figure
    from cnnlab.viz import figure_bytes

    if args.kind == "batch":
        return viz_batch(args)
    if not args.run_dirs:
        raise ConfigError(f"`cnnlab viz {args.kind}` draws a run: give its directory")
    run_dir, *others = args.run_dirs
    if others and args.kind != "runs":
        raise ConfigError(
            f"`cnnlab viz {args.kind}` takes one run directory, got {len(args.run_dirs)}"
        )
    view = RunView.load(
        run_dir, args.data_dir, args.trust_model_file, sys.stderr.isatty(), args.offline
    )
    chosen = inputs(view, args.index, args.image, args.invert)
    out = args.out or run_dir / f"{args.kind}.{args.format}"
    fmt = out.suffix.lstrip(".") or args.format
    atomic_write_bytes(out, figure_bytes(make_figure(view, args.kind, chosen, others), fmt))
    log.info("wrote %s", out)
    return 0


def viz_batch(args: argparse.Namespace) -> int:
    """`cnnlab viz batch`: training images as the network gets them (channels, size and
    --augment applied), each with its label, as fastai's show_batch draws them."""
    import torch

    from cnnlab.data.augment import augment, parse_augment
    from cnnlab.data.datasets import parse_size
    from cnnlab.data.folder import load_splits
    from cnnlab.viz import figure_bytes
    from cnnlab.viz.evaluation import plot_examples

    if args.run_dirs:
        raise ConfigError("`cnnlab viz batch` draws a dataset (--dataset), not a run")
    if not 1 <= args.count <= 256:
        raise ConfigError(f"--count must be from 1 to 256, got {args.count}")
    size = parse_size(args.image_size)
    train, _, classes, _ = load_splits(
        args.dataset, args.data_dir, args.channels, size, args.offline
    )
    order = torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(args.seed))
    chosen = order[: args.count].numpy()
    x = torch.from_numpy(train.images[chosen]).float() / 255
    x = x[:, None] if x.dim() == 3 else x  # (N, C, H, W)
    names = parse_augment(args.augment)
    if names:
        x = augment(x, names, torch.Generator().manual_seed(args.seed))
    shown = f"{args.dataset}: {args.count} training images" + (
        f", augmented ({', '.join(names)})" if names else ""
    )
    figure = plot_examples(x, train.labels[chosen].tolist(), classes, title=shown)
    out = args.out or Path(f"batch.{args.format}")
    atomic_write_bytes(out, figure_bytes(figure, out.suffix.lstrip(".") or args.format))
    log.info("wrote %s", out)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cnnlab.report import write_report

    path = write_report(
        args.run_dir, args.data_dir, args.out, args.trust_model_file, sys.stderr.isatty()
    )
    log.info("wrote %s (open it in any browser)", path)
    return 0


class ShowDefaults(argparse.HelpFormatter):
    """Every option's help ends with its default, as a user reads it ("off", "none")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default" in text or action.default is argparse.SUPPRESS:
            return text
        default = action.default
        shown = "off" if default is False else "none" if default in (None, []) else "%(default)s"
        return f"{text} (default: {shown})".strip()


def build_parser() -> argparse.ArgumentParser:
    from cnnlab import __version__
    from cnnlab.data import DATASETS
    from cnnlab.viz.kinds import ANIMATIONS, DEMOS, FIGURES, LEARNED_KERNELS

    parser = argparse.ArgumentParser(
        prog="cnnlab",
        description="The convolutional-network chapter of Dive into Deep Learning, as software.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser = functools.partial(sub.add_parser, formatter_class=ShowDefaults)  # type: ignore[method-assign]

    p = sub.add_parser("train", help="train a model (default: the book's LeNet recipe)")
    _add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("lr-find", help="the learning-rate range test: which --lr to train with")
    _add_config_flags(p)
    p.add_argument("--steps", type=int, default=300, help="optimizer steps (default: 300)")
    p.add_argument("--start-lr", type=float, default=1e-4, help="first lr (default: 1e-4)")
    p.add_argument("--end-lr", type=float, default=10.0, help="last lr (default: 10)")
    p.set_defaults(func=cmd_lr_find)

    p = sub.add_parser("export", help="a trained model as ONNX or TorchScript, for deployment")
    p.add_argument("run_dir", type=Path)
    p.add_argument(
        "--format", choices=["onnx", "torchscript"], default="onnx", help="the file format"
    )
    p.add_argument("-o", "--out", type=Path, help="file to write (default: RUN/model.onnx|pt)")
    p.add_argument("--data-dir", help="where the test images for the ONNX check are")
    _add_offline_flag(p)
    _add_trust_flag(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("eval", help="test accuracy and per-class accuracy of a trained run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--data-dir", help="directory holding the dataset's IDX files")
    _add_offline_flag(p)
    _add_device_flag(p)
    _add_trust_flag(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="classify PNG/JPEG images with a trained run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument(
        "--invert",
        action="store_true",
        help="invert the images (for dark objects on a light background)",
    )
    p.add_argument("--top", type=int, default=3, help="how many classes to show")
    _add_device_flag(p)
    _add_trust_flag(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "viz", help="write one figure of a trained run (or, batch: of a dataset) as PNG or SVG"
    )
    p.add_argument("kind", choices=[*FIGURES, "batch"])
    p.add_argument(
        "run_dirs",
        nargs="*",
        type=Path,
        metavar="RUN_DIR",
        help="the run; `runs` overlays several; none for `batch`",
    )
    p.add_argument(
        "--out", type=Path, help="output file (default: RUN_DIR/KIND.FORMAT; batch.FORMAT)"
    )
    p.add_argument("--format", choices=["png", "svg"], default="png", help="(default: png)")
    p.add_argument(
        "--dataset",
        default="fashion-mnist",
        help="batch: the dataset, as cnnlab train takes it (default: %(default)s)",
    )
    p.add_argument("--channels", type=int, default=0, help="batch: as cnnlab train's (default: 0)")
    p.add_argument(
        "--image-size", default="", help="batch: as cnnlab train's (default: the folder's)"
    )
    p.add_argument("--augment", default="", help="batch: as cnnlab train's (default: none)")
    p.add_argument("--count", type=int, default=32, help="batch: images drawn (default: 32)")
    p.add_argument("--seed", type=int, default=0, help="batch: which ones (default: 0)")
    p.add_argument(
        "--index",
        type=int,
        action="append",
        default=[],
        help="test image index for feature-maps/activations (repeatable)",
    )
    p.add_argument(
        "--image",
        type=Path,
        action="append",
        default=[],
        help="image file for feature-maps/activations (repeatable)",
    )
    p.add_argument("--invert", action="store_true", help="invert --image files")
    p.add_argument("--data-dir", help="directory holding the dataset's IDX files")
    _add_offline_flag(p)
    _add_trust_flag(p)
    p.set_defaults(func=cmd_viz)

    p = sub.add_parser("report", help="write a self-contained report.html for a run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, help="output file (default: RUN_DIR/report.html)")
    p.add_argument("--data-dir", help="directory holding the dataset's IDX files")
    _add_offline_flag(p)
    _add_trust_flag(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("explore", help="an in-browser explorer of a trained run (one HTML file)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("-o", "--out", type=Path, help="file to write (default: RUN/explorer.html)")
    p.add_argument(
        "--images",
        type=int,
        default=300,
        help="test images to embed, the first N (default: %(default)s)",
    )
    p.add_argument("--data-dir", help="directory holding the dataset's IDX files")
    _add_offline_flag(p)
    _add_trust_flag(p)
    p.set_defaults(func=cmd_explore)

    p = sub.add_parser("animate", help="the chapter's operations as a GIF, SVG or HTML animation")
    p.add_argument("kind", choices=ANIMATIONS)
    p.add_argument("-o", "--out", type=Path, required=True, help="FILE.gif, FILE.svg or FILE.html")
    p.add_argument("--input", default="3x3", help="input size (default: %(default)s)")
    p.add_argument("--kernel", default="2x2", help="kernel or window (default: %(default)s)")
    p.add_argument("--padding", default="0", help="padding on each side (default: %(default)s)")
    p.add_argument(
        "--stride",
        default="",
        help="stride (default: 1 for the convolutions, the window for pool: PyTorch's, as "
        "cnnlab shape and the ops have it)",
    )
    p.add_argument("--dilation", default="1", help="dilation (default: %(default)s)")
    p.add_argument(
        "--channels",
        default="2x1",
        help="channels and conv1x1: C_INxC_OUT, each 1..4 (default: %(default)s)",
    )
    p.add_argument("--pool", choices=["max", "avg"], default="max", help="pool: the kind")
    p.add_argument(
        "--values",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="numbers in the cells (default: for inputs up to 6x6)",
    )
    p.set_defaults(func=cmd_animate)

    p = sub.add_parser("summary", help="layer-by-layer table of a model")
    p.add_argument("run", nargs="?", type=Path, help="a run directory (or give --model)")
    p.add_argument(
        "--model",
        default="lenet",
        help="a registered model (cnnlab models lists them), PATH.py:FUNC, "
        "package.module:FUNC or a run directory (default: %(default)s)",
    )
    p.add_argument(
        "--model-options", default="", help="KEY=VALUE options of --model (default: none)"
    )
    p.add_argument(
        "--input", default="1x28x28", help="CxHxW of the images it gets (default: %(default)s)"
    )
    _add_trust_flag(p)
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("models", help="the registered models with their parameter counts")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser(
        "shape",
        help="output size (and receptive field) of convolution and pooling layers",
        description="Sizes are N or HxW. One layer from --kernel/--stride/--padding/--dilation "
        "prints its output size; --layer (repeatable, like conv,k=5,p=2 or pool,k=2) prints a "
        "table for a stack.",
    )
    p.add_argument("--input", required=True, help="input size, like 28x28")
    p.add_argument("--kernel", default="1", help="kernel size (default: %(default)s)")
    p.add_argument("--stride", default="1", help="stride (default: %(default)s)")
    p.add_argument("--padding", default="0", help="padding on each side (default: %(default)s)")
    p.add_argument("--dilation", default="1", help="dilation (default: %(default)s)")
    p.add_argument(
        "--layer",
        action="append",
        default=[],
        help="a layer: conv|pool,k=K[,s=S][,p=P][,d=D] (repeatable)",
    )
    p.set_defaults(func=cmd_shape)

    p = sub.add_parser("sweep", help="train several variants and compare them in one table")
    p.add_argument("file", type=Path, help="TOML file of runs ([base], [[run]], [grid])")
    p.add_argument(
        "--out-dir", type=Path, help="where the runs and table go (default: runs/sweep-FILE-TIME)"
    )
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (default: %(default)s)")
    p.add_argument(
        "--max-variants", type=int, help="refuse a file of more variants than this (default: 200)"
    )
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("demo", help="the chapter's demonstrations, printed (and drawn)")
    p.add_argument("name", choices=DEMOS)
    p.add_argument("--out", type=Path, help="picture of edges, kernels (default: ./NAME.png)")
    p.add_argument("--kernel", choices=LEARNED_KERNELS, help="learn-kernel: the kernel to learn")
    p.add_argument("--steps", type=int, help="learn-kernel: gradient steps")
    p.add_argument("--lr", type=float, help="learn-kernel: learning rate")
    p.add_argument("--index", type=int, help="kernels: the Fashion-MNIST test image")
    p.add_argument("--data-dir", help="kernels: directory holding the dataset's IDX files")
    _add_offline_flag(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "data", help="show, verify or download the datasets; write a test image to a file"
    )
    p.add_argument("action", choices=["status", "verify", "download", "sample"])
    p.add_argument(
        "--dataset",
        default="fashion-mnist",
        help=f"{', '.join(DATASETS)}; sample also takes folder:DIR (default: %(default)s)",
    )
    p.add_argument("--data-dir", help="directory to check, or to download into (default: none)")
    p.add_argument("--index", type=int, default=0, help="sample: which test image (default: 0)")
    p.add_argument("-o", "--out", type=Path, help="sample: the PNG to write (default: CLASS.png)")
    p.add_argument(
        "--mirror",
        action="append",
        help="base URL to use instead of the official mirrors (repeatable)",
    )
    p.set_defaults(func=cmd_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops a list of images at the first option: `predict RUN a.png --invert b.png`
    # leaves b.png over; it belongs to the list.
    if args.command == "predict" and extra and not any(e.startswith("-") for e in extra):
        args.images += [Path(e) for e in extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    ensure_logging(command_line=True)
    try:
        code: int = args.func(args)
    except CnnlabError as e:
        if isinstance(e, Interrupted):  # a checkpoint was saved: say how to resume
            print(str(e), file=sys.stderr)
            return e.exit_code
        print(f"error: {e}", file=sys.stderr)
        return int(getattr(e, "exit_code", 1))  # the workers' own, for a distributed run
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cnnlab demo edges | head`: the reader has gone; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # a full disk, a read-only or vanished directory, ...
        where = f"{e.filename}: " if e.filename else ""
        print(
            f"error: {where}{e.strerror or e} ({OS_ADVICE.get(e.errno or 0, 'see above')}); "
            "files written before it (the last checkpoint among them) are whole",
            file=sys.stderr,
        )
        return 1
    except MemoryError:
        print(
            "error: out of memory: choose a smaller --batch-size or --model-options",
            file=sys.stderr,
        )
        return 1
    return code


OS_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space, then resume the run",
    errno.EDQUOT: "the disk quota is used up: free some space, then resume the run",
    errno.EACCES: "no permission: choose a directory you can write to",
    errno.EROFS: "a read-only file system: choose another directory",
    errno.ENOENT: "it no longer exists",
    errno.ELOOP: "a symbolic link that loops: point it somewhere real",
}


if __name__ == "__main__":
    sys.exit(main())
