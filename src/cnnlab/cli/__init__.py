"""The `cnnlab` command: a thin, lazily imported layer over the public functions.

Each command lives in its own module (``cnnlab.cli.<module>``) and is imported only when it runs, so
`cnnlab --help` does not import torch. One error boundary turns a CnnlabError (or a missing file) into
a one-line message and exit code 2; set CNNLAB_DEBUG=1 for the full traceback.
"""

from __future__ import annotations

import errno
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
    "compress": ("compress", "compress", "Compress images into real files with a `compress` run."),
    "decompress": ("compress", "decompress", "Rebuild images from files written by `cnnlab compress`."),
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
    # cnnlab's image reader refuses such files and names them; Pillow's warning would not name the file
    warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit", module="PIL")


def _print_any_file_name() -> None:
    """Print file names that are not valid UTF-8 as the bytes they have on disk, as ``ls`` does: Python
    keeps such bytes as surrogates, and a strict stdout (the usual one under a UTF-8 locale other than
    C) raises UnicodeEncodeError on them in the middle of a table."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")


def _path_error(exc: OSError) -> bool:
    return isinstance(exc, (FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)) or \
        exc.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT)


def main(argv: list[str] | None = None) -> None:
    """Entry point with the error boundary: user errors become one line on stderr and exit code 2."""
    from cnnlab._runtime import tune_openmp_env
    from cnnlab.errors import CnnlabError

    tune_openmp_env()  # before any command imports torch: libgomp reads it once
    _one_line_warnings()
    _print_any_file_name()
    try:
        cli.main(args=argv, prog_name="cnnlab", standalone_mode=False)
    except click.exceptions.Abort as exc:
        # click turns KeyboardInterrupt (and so a training run's StopRequested) into Abort; keep the
        # shell's code for death by that signal: 130 for Ctrl-C, 143 for SIGTERM
        click.echo("Aborted.", err=True)
        sys.exit(128 + getattr(exc.__cause__, "signum", 2))
    except click.ClickException as exc:
        # One line like every other user error (click's own form takes four: usage, hint, blank, error).
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if isinstance(exc, click.UsageError) and ctx else ""
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except (CnnlabError, FileNotFoundError) as exc:
        if os.environ.get("CNNLAB_DEBUG"):
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        # An output path with a file where a folder must go, no permission, a read-only file system or
        # a full disk: the user can fix these. Any other OSError is a bug and keeps its traceback.
        if os.environ.get("CNNLAB_DEBUG") or not _path_error(exc):
            raise
        where = f"{exc.filename}: " if exc.filename is not None else ""
        fix = ("free some space or choose another path (--out)" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
               else "choose another path (--out) or fix this one")
        click.echo(f"error: {where}{exc.strerror}; {fix}", err=True)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        click.echo("Interrupted.", err=True)
        sys.exit(128 + getattr(exc, "signum", 2))  # the shell's code for death by that signal: 130, 143
