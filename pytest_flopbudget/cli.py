"""``flopbudget MODULE:CALLABLE``: the per-module table of one model, from the shell.

Kept light: argparse only at import time, torch imported once the arguments are known to be
well formed, so ``flopbudget --help`` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, NoReturn, Sequence

from pytest_flopbudget.counting.devices import DEVICES
from pytest_flopbudget.counting.errors import wants_integer_inputs
from pytest_flopbudget.counting.table import SORTS

EXIT_OK = 0
EXIT_USAGE = 2

# dtype names accepted by --dtype, mapped to torch attribute names (resolved after torch loads).
DTYPES = {
    "float32": "float32",
    "float": "float32",
    "float16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "float64": "float64",
    "double": "float64",
    "long": "long",
    "int64": "long",
    "int32": "int32",
    "int": "int32",
    "bool": "bool",
}
PROGRESS_AFTER_S = 1.0


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # one line instead of argparse's usage block: the message already names the bad argument
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _shape(text: str) -> tuple[int, ...]:
    """'1,3,224,224' -> (1, 3, 224, 224); every dimension a positive integer."""
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    if not text.strip() or any(not p for p in parts):
        raise argparse.ArgumentTypeError(
            f"invalid shape {text!r}: give comma-separated dimensions, e.g. 1,3,224,224"
        )
    dims = []
    for part in parts:
        try:
            dim = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid shape {text!r}: {part!r} is not an integer (e.g. 1,3,224,224)"
            ) from None
        if dim <= 0:
            raise argparse.ArgumentTypeError(
                f"invalid shape {text!r}: dimensions must be positive, got {dim}"
            )
        dims.append(dim)
    return tuple(dims)


def _depth(text: str) -> int:
    try:
        depth = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid depth {text!r}: give a whole number, e.g. 2") from None
    if depth < 0:
        raise argparse.ArgumentTypeError(f"invalid depth {depth}: 0 (totals only) or more")
    return depth


def _html_path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path is not a file name")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a file path such as model.html")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="flopbudget",
        description=(
            "Count the FLOPs, MACs and parameters of a model built by MODULE:CALLABLE and print "
            "its per-module table. The current directory is importable."
        ),
        epilog=(
            "examples:\n"
            "  flopbudget example_project.models:resnet --input-shape 1,3,224,224\n"
            "  flopbudget example_project.models:gpt --input-shape 1,128 --dtype long --backward\n"
            "  flopbudget example_project.models:gpt --input-shape 1,128 --dtype long --optimizer adamw\n"
            "  flopbudget example_project.models:llama_7b --input-shape 1,128 --dtype long --depth 1 --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "target",
        metavar="MODULE:CALLABLE",
        help="import path of a zero-argument callable returning an nn.Module (or of a module instance)",
    )
    parser.add_argument(
        "--input-shape",
        "-s",
        dest="shapes",
        action="append",
        type=_shape,
        metavar="D0,D1,...",
        help="shape of one positional input; repeat for a model with several inputs",
    )
    parser.add_argument(
        "--dtype",
        dest="dtypes",
        action="append",
        choices=sorted(DTYPES),
        metavar="DTYPE",
        help=(
            "dtype of the inputs: float32 (default), bfloat16, float16, float64, long (token ids, "
            "given as zeros), int32, bool; once for all inputs or once per --input-shape. A floating "
            "dtype other than float32 also casts the model."
        ),
    )
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="meta",
        help="where to count: meta (default; no weights or activations allocated), cpu or cuda",
    )
    parser.add_argument("--as-list", action="store_true",
                        help="pass the inputs as one list argument, forward([x1, x2, ...]) (a detector's images), "
                             "instead of one positional argument each")
    parser.add_argument("--depth", type=_depth, default=2, help="module levels shown below the root (default 2)")
    parser.add_argument("--sort", choices=SORTS, default="name", help="row order (default: name, as a tree)")
    parser.add_argument("--backward", action="store_true", help="also count the backward pass (a training step)")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS),
                        help="count one steady-state training step with this optimizer (forward, backward, "
                             "optimizer step; its state in the memory): implies --backward")
    parser.add_argument("--json", action="store_true", help="print Measurement.to_dict() as JSON instead of the table")
    parser.add_argument("--html", type=_html_path, metavar="PATH",
                        help="also write the picture: a self-contained HTML page of the module tree (all depths)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return parser


@dataclass(frozen=True)
class Request:
    target: str
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    device: str
    backward: bool
    debug: bool = False
    optimizer: str | None = None
    as_list: bool = False


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["merge"]:
        return merge_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        request = _request(args)
        measurement = _run(request)
    except KeyboardInterrupt:
        print("flopbudget: interrupted", file=sys.stderr)
        return 130
    except CliError as error:
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"flopbudget: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    inputs = ", ".join(f"{_fmt_shape(s)} {d}" for s, d in zip(request.shapes, request.dtypes))
    if args.json:
        print(json.dumps(measurement.to_dict(), indent=2))
    else:
        print(f"{request.target}  inputs: {inputs}")
        print(measurement.table(args.depth, sort=args.sort))
    if args.html:
        return _write_html(args.html, request.target, inputs, measurement)
    return EXIT_OK


def _write_html(path: str, target: str, inputs: str, measurement: Any) -> int:
    from pathlib import Path

    from pytest_flopbudget.reporting import html
    from pytest_flopbudget.reporting.html_model import view_of_measurement

    try:
        html.write(Path(path), view_of_measurement(target, measurement, (f"inputs: {inputs}",)))
    except OSError as error:
        print(f"flopbudget: error: cannot write {path}: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"flopbudget: wrote {path}", file=sys.stderr)
    return EXIT_OK


# --optimizer: torch.optim's class, with the defaults a training script would start from
OPTIMIZERS = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD", "sgd-momentum": "SGD", "adagrad": "Adagrad",
              "rmsprop": "RMSprop"}


def _optimizer(name: str) -> Any:
    """A function of the parameters returning the named optimizer (measure()'s optimizer=)."""
    import torch

    cls = getattr(torch.optim, OPTIMIZERS[name])
    options = {"lr": 1e-3}
    if name == "sgd-momentum":
        options["momentum"] = 0.9
    return lambda params: cls(params, **options)


def _request(args: argparse.Namespace) -> Request:
    if ":" not in args.target or args.target.startswith(":") or args.target.endswith(":"):
        raise CliError(
            f"{args.target!r} is not MODULE:CALLABLE; write e.g. example_project.models:resnet"
        )
    if not args.shapes:
        raise CliError("give the input shape with --input-shape, e.g. --input-shape 1,3,224,224")
    dtypes = [DTYPES[d] for d in (args.dtypes or ["float32"])]
    if len(dtypes) == 1:
        dtypes = dtypes * len(args.shapes)
    elif len(dtypes) != len(args.shapes):
        raise CliError(
            f"{len(dtypes)} --dtype values for {len(args.shapes)} --input-shape values; "
            "give one --dtype for all inputs or one per input"
        )
    return Request(args.target, tuple(args.shapes), tuple(dtypes), args.device, args.backward or bool(args.optimizer),
                   args.debug, args.optimizer, args.as_list)


def resolve(target: str) -> Any:
    """The object named by MODULE:ATTR[.ATTR...], importing MODULE from the current directory."""
    module_name, _, attr_path = target.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        # console scripts do not put the current directory on sys.path; `python -m` does
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise CliError(
                f"cannot import {module_name!r}: no module named {error.name!r} "
                f"(run from the directory that contains it, or install it)"
            ) from error
        raise CliError(f"importing {module_name!r} failed: {_one_line(error)}") from error
    except Exception as error:
        raise CliError(f"importing {module_name!r} failed: {_one_line(error)}") from error
    where = module_name
    for attr in attr_path.split("."):
        if not hasattr(obj, attr):
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(attr, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CliError(f"{where!r} has no attribute {attr!r}{hint}")
        obj = getattr(obj, attr)
        where = f"{where}.{attr}" if where != module_name else f"{module_name}:{attr}"
    return obj


def _factory(target: str, obj: Any, float_dtype: Any) -> Callable[[], Any]:
    """A zero-argument factory that builds the model and says clearly what went wrong if it can't."""
    from torch import nn

    if isinstance(obj, nn.Module):
        # a ready instance, imported by this process alone: casting it changes nobody's object
        model = obj.to(float_dtype) if float_dtype is not None else obj
        return lambda: model
    if not callable(obj):
        raise CliError(f"{target} is not callable (got {type(obj).__name__} {obj!r:.40}); name a function or class that returns an nn.Module")

    def build() -> nn.Module:
        try:
            model = obj()
        except Exception as error:
            raise CliError(f"calling {target}() raised {type(error).__name__}: {_one_line(error)}") from error
        if not isinstance(model, nn.Module):
            raise CliError(f"{target}() returned {type(model).__name__}, not an nn.Module")
        if float_dtype is not None:
            model = model.to(float_dtype)
        return model

    return build


def _inputs(shapes: Sequence[tuple[int, ...]], dtypes: Sequence[Any]) -> Callable[[], tuple]:
    import torch

    def make() -> tuple:
        out = []
        for shape, dtype in zip(shapes, dtypes):
            if dtype.is_floating_point:
                out.append(torch.randn(shape, dtype=dtype))
            elif dtype == torch.bool:
                out.append(torch.ones(shape, dtype=dtype))
            else:
                # token ids: zero is a valid index into any vocabulary
                out.append(torch.zeros(shape, dtype=dtype))
        return tuple(out)

    return make


def _run(request: Request) -> Any:
    obj = resolve(request.target)
    import torch

    import pytest_flopbudget as fb

    dtypes = [getattr(torch, d) for d in request.dtypes]
    floats = {d for d in dtypes if d.is_floating_point and d != torch.float32}
    if len(floats) > 1:
        raise CliError("inputs of two reduced floating dtypes; the model can be cast to only one")
    float_dtype = next(iter(floats), None)
    build = _factory(request.target, obj, float_dtype)
    if request.device == "cpu":
        _check_cpu_memory(request.target, build, float_dtype)
    with _Progress(f"counting {request.target} on {request.device}"):
        try:
            optimizer = _optimizer(request.optimizer) if request.optimizer else None
            inputs = _inputs(request.shapes, dtypes)
            if request.as_list:
                separate = inputs
                inputs = lambda: (list(separate()),)  # noqa: E731 - one positional argument: the list
            return fb.measure(build, inputs, device=request.device, backward=request.backward,
                              optimizer=optimizer)
        except CliError:
            raise
        except fb.MeasurementError as error:
            option = f" (--device {error.use_device})" if error.use_device is not None else ""
            raise CliError(_one_line(error) + option) from error
        except Exception as error:
            shapes = ", ".join(f"{_fmt_shape(s)} {d}" for s, d in zip(request.shapes, request.dtypes))
            hint = " (the model wants integer inputs such as token ids: give --dtype long)" \
                if wants_integer_inputs(error) else ""
            raise CliError(
                f"the model's forward failed on inputs {shapes}: {type(error).__name__}: {_one_line(error)}{hint}"
            ) from error


def estimate_weight_bytes(build: Callable[[], Any], float_dtype: Any = None) -> int | None:
    """Bytes of parameters and buffers, from the model built on meta (None when it can't be)."""
    import torch

    try:
        with torch.device("meta"):
            model = build()
    except Exception:
        return None
    total = 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if float_dtype is not None and tensor.is_floating_point():
            size = torch.empty((), dtype=float_dtype).element_size()
        else:
            size = tensor.element_size()
        total += tensor.numel() * size
    return total


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _check_cpu_memory(target: str, build: Callable[[], Any], float_dtype: Any) -> None:
    needed = estimate_weight_bytes(build, float_dtype)
    available = _available_memory()
    if needed is None or available is None:
        return
    if needed > available:
        raise CliError(
            f"{target} needs about {needed / 2**30:.1f} GiB for its weights on cpu, more than the "
            f"{available / 2**30:.1f} GiB available; count it with --device meta (same numbers, no memory)"
        )
    if needed > available // 2:
        print(
            f"flopbudget: warning: {target} needs about {needed / 2**30:.1f} GiB for its weights on cpu "
            f"({available / 2**30:.1f} GiB available); --device meta gives the same numbers without it",
            file=sys.stderr,
        )


class _Progress:
    """Says on stderr that a count is running once it has taken longer than a second."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.done = threading.Event()
        self.started = 0.0
        self.shown = False
        self.thread = threading.Thread(target=self._wait, daemon=True)

    def _wait(self) -> None:
        if not self.done.wait(PROGRESS_AFTER_S):
            self.shown = True
            print(f"flopbudget: {self.what} ...", file=sys.stderr, flush=True)

    def __enter__(self) -> _Progress:
        self.started = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        if self.shown and exc[0] is None:
            print(f"flopbudget: counted in {time.monotonic() - self.started:.1f} s", file=sys.stderr, flush=True)


def _fmt_shape(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape)


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def build_merge_parser() -> argparse.ArgumentParser:
    from pytest_flopbudget.reporting.baseline import DEFAULT_BASELINE
    from pytest_flopbudget.reporting.commands import UPDATE_HINT

    parser = _Parser(
        prog="flopbudget merge",
        description=(
            "Join the JSON reports of a suite run in shards (pytest-split, pytest-shard, -k or path splits; "
            "each shard run with --flop-report=shard-N.json) into one verdict, one Markdown summary and, with "
            f"--update, the baseline one serial `{UPDATE_HINT}` run writes. Exit status 1 when a "
            "test is over budget or regressed (or, with --strict, entries are stale or missing), 2 when the "
            "reports cannot be joined (a shard missing, two shards disagreeing)."
        ),
    )
    parser.add_argument("reports", nargs="+", metavar="REPORT.json", help="every shard's JSON report")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, metavar="PATH",
                        help=f"the committed baseline (default {DEFAULT_BASELINE})")
    parser.add_argument("--update", action="store_true", help="write the shards' measurements into the baseline")
    parser.add_argument("--strict", action="store_true",
                        help="also fail tests without an entry, improvements beyond the tolerance and stale entries")
    parser.add_argument("--markdown", metavar="PATH",
                        help="append the Markdown summary to PATH (e.g. $GITHUB_STEP_SUMMARY)")
    parser.add_argument("--html", metavar="PATH",
                        help="write the merged run's HTML report (every test's module tree) to PATH")
    parser.add_argument("-q", "--quiet", action="store_true", help="print the count line only")
    return parser


class _Lines:
    """A terminal writer for the summary renderer (write_line, write_sep) that prints to stdout."""

    def write_line(self, line: str) -> None:
        print(line)

    def write_sep(self, sep: str, title: str) -> None:
        print(f" {title} ".center(PRINT_WIDTH, sep))


PRINT_WIDTH = 100


def merge_main(argv: Sequence[str]) -> int:
    """``flopbudget merge``: the logic is reporting.merge's, shared with nothing pytest."""
    from pathlib import Path

    from pytest_flopbudget.reporting.baseline import BaselineError, load
    from pytest_flopbudget.reporting.merge import MergeError, merge
    from pytest_flopbudget.reporting.report import markdown, write_file, write_terminal

    args = build_merge_parser().parse_args(argv)
    if args.html and Path(args.html).suffix.lower() not in (".html", ".htm"):
        print(f"flopbudget merge: error: --html {args.html}: give a path ending in .html", file=sys.stderr)
        return EXIT_USAGE
    try:
        baseline = load(Path(args.baseline).resolve())
        if not args.update:
            baseline.require_content()
        merged = merge([Path(p) for p in args.reports], baseline, update=args.update, strict=args.strict)
    except (BaselineError, MergeError) as error:
        print(f"flopbudget merge: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    write_terminal(_Lines(), merged.summary, -1 if args.quiet else 1, PRINT_WIDTH)  # type: ignore[arg-type]
    if args.markdown:
        path = Path(args.markdown)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(markdown(merged.summary))
    if args.html:
        try:
            write_file(Path(args.html), merged.summary, merged.verdicts)
        except OSError as error:
            print(f"flopbudget merge: error: cannot write {args.html}: {error}", file=sys.stderr)
            return EXIT_USAGE
    return merged.outcome.exit_status
