"""What every command shares: the Typer apps, the error guard, YAML config files, output.

Every user mistake surfaces as ``error: <one line>`` on stderr and exit code 2. Library
errors name settings (``train.lr``); the guard shows the flag that sets each one on the
command at hand (``--lr``), from the table ``flag_table`` reads off the command itself.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from fewlabels.cli import _lib as lib
from fewlabels.cli.settings import SettingError
from fewlabels.core.errors import ConfigError, FewlabelsError

try:  # typer vendors click from 0.20 on; older typer uses click itself
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover
    from click import get_current_context

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train image classifiers from few labels and many unlabeled images.",
)
data_app = typer.Typer(no_args_is_help=True, help="Look at a data source before training.")
app.add_typer(data_app, name="data")

# command name -> {parameter name: the setting it sets}; filled by ``options.build_command``
SETTINGS: dict[str, dict[str, str]] = {}


def reflow(doc: str) -> str:
    """A docstring as ``--help`` text: paragraphs kept, each on one line (Typer keeps a
    docstring's line breaks, which break lines a second time at the terminal's width)."""
    paras = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paras)


def command(group: typer.Typer = app, name: str | None = None) -> Callable[[F], F]:
    """Register a function as a command of ``group``, its docstring reflowed as its help."""

    def deco(fn: F) -> F:
        group.command(name or fn.__name__, help=reflow(fn.__doc__ or ""))(fn)
        return fn

    return deco


def fail(msg: str, code: int = 2) -> typer.Exit:
    """Print ``error: msg`` on stderr; return the ``Exit`` to raise."""
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code)


def flag_table(ctx: typer.Context) -> dict[str, str]:
    """Setting name -> the flag of ``ctx``'s command that sets it (``train.lr`` -> ``--lr``),
    read off the command's own parameters; every option also under its own name
    (``finetune_blocks`` -> ``--finetune-blocks``, ``out`` -> ``--out``). An on/off option
    is also there as ``NAME=True`` and ``NAME=False`` (``source_labels=False`` ->
    ``--no-source-labels``)."""
    settings = SETTINGS.get(ctx.info_name or "", {})
    table: dict[str, str] = {}
    for param in ctx.command.params:
        setting = settings.get(param.name or "")
        if setting is not None:
            _add_flags(table, setting, param, overwrite=True)
    for param in ctx.command.params:
        if param.name:
            _add_flags(table, param.name, param, overwrite=False)
    return table


def _add_flags(table: dict[str, str], name: str, param: Any, overwrite: bool) -> None:
    """``table[name]``: ``param``'s long flag; for an on/off option also ``name=True`` and
    ``name=False``: its on and off flags."""
    longs = [o for o in param.opts if o.startswith("--")]
    if not longs:
        return
    offs = [o for o in getattr(param, "secondary_opts", ()) if o.startswith("--")]
    entries = {name: longs[0]}
    if offs:
        entries.update({f"{name}=True": longs[0], f"{name}=False": offs[0]})
    for key, flag in entries.items():
        if overwrite:
            table[key] = flag
        else:
            table.setdefault(key, flag)


def current_flags() -> dict[str, str]:
    """``flag_table`` of the command running now (empty outside a command)."""
    ctx = get_current_context(silent=True)
    return flag_table(ctx) if ctx is not None else {}


def name_flags(msg: str, flags: Mapping[str, str]) -> str:
    """``msg`` with each setting name replaced by its flag: a name in backticks (how library
    messages quote a setting that is a plain word: `out`), and dotted (``train.lr``) or
    underscored (``labels_per_class``) names as they stand; ``NAME=False`` becomes an
    on/off option's off flag. A quoted name this command has no flag for loses its
    backticks."""
    quoted = r"`([\w.]+(?:=True|=False)?)`"
    msg = re.sub(quoted, lambda m: flags.get(m.group(1), m.group(1)), msg)
    for setting in sorted(flags, key=len, reverse=True):
        if "." in setting or "_" in setting:
            pattern = rf"(?<![\w.-]){re.escape(setting)}(?!\w|\.\w)"
            msg = re.sub(pattern, flags[setting], msg)
    return msg


@contextlib.contextmanager
def guard(out: str | Path | None = None, flags: Mapping[str, str] | None = None) -> Iterator[None]:
    """Turn library errors into one line and exit code 2; never show a traceback.

    ``flags`` (from ``flag_table``) turns the setting names in a library error into the
    command's flags."""
    try:
        yield
    except SettingError as e:  # names settings on purpose
        raise fail(str(e), e.exit_code) from None
    except FewlabelsError as e:
        table = flags if flags is not None else current_flags()
        raise fail(name_flags(str(e), table), e.exit_code) from None
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise fail(f"invalid setting {where}: {first.get('msg', '')}".strip()) from None
    except KeyboardInterrupt:
        saved = f"; the last checkpoint in {out} is kept, rerun to resume" if out else ""
        raise fail(f"interrupted{saved}", 130) from None
    except MemoryError:
        raise fail("out of memory: use a smaller --batch-size or fewer images") from None


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` for the command line: ``warning: <message>`` on one line,
    without the source file, line and code Python shows by default."""
    text = " ".join(str(message).split()).removeprefix("warning: ")
    if not issubclass(category, UserWarning):
        text += f" ({category.__name__})"
    with contextlib.suppress(OSError):  # stderr closed: a warning is not worth a crash
        print(f"warning: {text}", file=file or sys.stderr, flush=True)


def install_warning_format() -> None:
    """Print every library warning as one ``warning: ...`` line (the CLI entry point)."""
    warnings.showwarning = show_warning


def given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was set on the command line (not left at its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def load_config(path: Path | None, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a YAML config file (``{}`` for none), checked against ``fields``.

    The dict also knows the line of each key (``obj.lines``); duplicate and unknown keys
    are one-line errors naming the file and line."""
    if path is None:
        return {}
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    obj = lib.load_yaml_lines(path.read_bytes(), f"config file {path}")  # refuses duplicates
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings")
    for key in ("train", "method_kwargs", "backbone_kwargs"):
        if not isinstance(obj.get(key, {}), dict):
            raise ConfigError(f"config file {path}: {key!r} must be a mapping of settings")
    unknown = [k for k in obj if k not in fields]
    if unknown:
        line = getattr(obj, "lines", {}).get(unknown[0])
        raise ConfigError(
            f"config file {path}{f' line {line}' if line else ''}: unknown key "
            f"{unknown[0]!r}; valid keys: {', '.join(fields)}"
        )
    return obj


def echo_metrics(metrics: Any, out: Path) -> None:
    """The test accuracy and macro-F1 of a finished run, and where its results are."""
    if metrics is None:
        typer.echo(f"no test set; model saved in {out}")
        return
    typer.echo(f"test accuracy  {metrics.accuracy:.4f}")
    typer.echo(f"test macro-F1  {metrics.macro_f1:.4f}")
    typer.echo(f"results in {out}")


def slug(name: str) -> str:
    """``name`` as a safe file-name stem."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:60] or "data"


# Options shared by several commands.
DATA_HELP = (
    "Data spec: digits, cifar10:PATH, cifar100:PATH, stl10:PATH, folder:PATH, "
    "tinyimagenet:PATH or npz:FILE; options as ,key=value (e.g. folder:imgs,size=64)."
)
DataOpt = Annotated[str, typer.Option("--data", help=DATA_HELP)]
TestOpt = Annotated[
    str | None, typer.Option("--test", help="A separate data spec for the test set.")
]
LpcOpt = Annotated[
    int | None,
    typer.Option("--labels-per-class", help="Labeled images per class (stratified, seeded)."),
]
FracOpt = Annotated[
    float | None,
    typer.Option("--labeled-fraction", help="Fraction of the training pool that is labeled."),
]
ValOpt = Annotated[
    str,
    typer.Option(
        "--val",
        help="Validation split: train:F (fraction of train), test:F (fraction of the test "
        "set, e.g. test:0.2 for the reports' 1:4 val:test) or none.",
    ),
]
BudgetOpt = Annotated[
    str, typer.Option("--budget", help="How long to train: 20s, 30m, 2h, 500steps, 10epochs.")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for splits, sampling and init.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
StrictOpt = Annotated[bool, typer.Option(help="Refuse corrupt images.")]
ProgressOpt = Annotated[bool, typer.Option(help="Show a progress bar.")]
CheckpointArg = Annotated[Path, typer.Argument(help="model.pt, checkpoint.pt or a run folder.")]
LABELS_HELP = (
    "Labels file (CSV with id,label columns) of images already labeled; "
    "see `fewlabels data add-labels`."
)
SOURCE_LABELS_HELP = (
    "Count the labels the data source itself gives as labeled; --no-source-labels "
    "hides them, so the labels file is the whole labeled set (a simulation on a "
    "fully labeled benchmark)."
)
LabelsOpt = Annotated[Path | None, typer.Option("--labels", "--labeled", help=LABELS_HELP)]
SourceLabelsOpt = Annotated[bool, typer.Option(help=SOURCE_LABELS_HELP)]

LOGGER_HELP = (
    "Log the run to a tracker: tensorboard, mlflow, wandb or csv (repeatable, or a comma "
    "list; NAME:WHERE gives a folder, an MLflow tracking URI or a W&B project). Each "
    "tracker but csv is an extra: pip install 'fewlabels[tensorboard]'."
)
LoggerOpt = Annotated[list[str] | None, typer.Option("--logger", help=LOGGER_HELP, metavar="NAME")]


def tracker_specs(values: list[str] | None) -> list[str]:
    """The trackers of ``--logger`` / ``--export``, checked. An mlflow tracker without a
    tracking URI (the spec's or ``MLFLOW_TRACKING_URI``) keeps a file store in the run
    folder, which MLflow 3 opens only with ``MLFLOW_ALLOW_FILE_STORE``: the command sets it
    to true unless the environment already says otherwise."""
    specs = lib.parse_logger_specs(values)
    plain = any(s.lower() == "mlflow" or s.lower().startswith("mlflow:file:") for s in specs)
    if plain and not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return specs
