"""The `cnnlab` command: a thin, lazily imported layer over the public functions.

Each command lives in its own module (``cnnlab.cli.<module>``) and is imported only when it runs, so
`cnnlab --help` does not import torch. One error boundary turns a CnnlabError (or a missing file) into
a one-line message and exit code 2; set CNNLAB_DEBUG=1 for the full traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

# command name -> (module under cnnlab.cli, attribute, one-line help shown by `cnnlab --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("demo", "demo", "Train, evaluate and explain a small Xception on built-in data."),
    "ops": ("ops", "ops", "Exact convolution, pooling and transposed convolution, step by step."),
    "models": ("models", "models", "List the model registry and summarise a model layer by layer."),
    "experiment": ("experiment", "experiment", "Small experiments that make a lecture point visible."),
    "train": ("train", "train", "Train a model for a task on a data spec into a run directory."),
    "eval": ("evaluate", "evaluate", "Evaluate a run directory on a data spec."),
    "predict": ("predict", "predict", "Predict with a run directory on image files or folders."),
    "export": ("export", "export", "Export a run directory's model (ONNX)."),
    "explain": ("explain", "explain", "Feature maps, filter visualisation and CAMs for a run."),
    "report": ("report", "report", "Write a self-contained HTML report for a run directory."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        try:
            mod = importlib.import_module(f"cnnlab.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"cnnlab.cli.{module}":
                return None  # not built yet in this version
            raise
        return getattr(mod, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from the table above so that `cnnlab --help` imports nothing.
        rows = [(name, helptext) for name, (_, _, helptext) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(self, ctx, args):  # type: ignore[no-untyped-def]
        name = args[0] if args else None
        if name is not None and name not in COMMANDS and not name.startswith("-"):
            from cnnlab.errors import did_you_mean

            raise click.UsageError(f"no such command {name!r}{did_you_mean(name, COMMANDS)}", ctx)
        return super().resolve_command(ctx, args)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cnnlab")
def cli() -> None:
    """cnnlab: modern convolutional networks, from the exact arithmetic of one convolution to
    training, applying and explaining them.

    Set CNNLAB_DEBUG=1 to see full tracebacks.
    """


def _one_line_warnings() -> None:
    """Show cnnlab's own warnings (skipped files, ...) as one plain line, not file:line + source."""
    import warnings

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if category.__module__.startswith("cnnlab"):
            click.echo(f"warning: {message}", err=True)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> None:
    """Entry point with the error boundary: user errors become one line on stderr and exit code 2."""
    from cnnlab._runtime import tune_openmp_env
    from cnnlab.errors import CnnlabError

    tune_openmp_env()  # before any command imports torch: libgomp reads it once
    _one_line_warnings()
    try:
        cli.main(args=argv, prog_name="cnnlab", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (CnnlabError, FileNotFoundError) as exc:
        if os.environ.get("CNNLAB_DEBUG"):
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError) as exc:
        if os.environ.get("CNNLAB_DEBUG"):  # an output path with a file where a folder must go, or read-only
            raise
        click.echo(f"error: {exc.filename}: {exc.strerror}; choose another path (--out) or fix this one", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
