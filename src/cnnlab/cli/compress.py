"""`cnnlab compress RUN IMAGE... --out DIR` and `cnnlab decompress RUN FILE... --out DIR`: real
compressed files from a `compress` run (``cnnlab.app.compress``), and the images rebuilt from them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from cnnlab.cli._options import echo_rows


def _run_and_files(files: str, out_help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The arguments both commands take: RUN, the files, --out, --device and --format."""
    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        for option in reversed((
            click.argument("run", type=click.Path(path_type=Path)),
            click.argument(files, nargs=-1, required=True),
            click.option("--out", type=click.Path(path_type=Path), required=True, help=out_help),
            click.option("--device", default="auto", show_default=True,
                         help="auto (a GPU when there is one), cpu, cuda or cuda:N; decode on the kind of device "
                              "that encoded (the coder's tables are floats)."),
            click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                         show_default=True),
        )):
            command = option(command)
        return command
    return decorate


@click.command("compress")
@_run_and_files("images", "Folder for the <stem>.cnlc files.")
def compress(run: Path, images: tuple[str, ...], out: Path, device: str, fmt: str) -> None:
    """Compress IMAGE files or folders with the `compress` run RUN into OUT/<stem>.cnlc.

    \b
    cnnlab compress runs/c01 photo.png photos/ --out packed
    Prints per image the file's size, its bpp (all the file's bits, header included, per pixel) and the
    PSNR of the image decoded back from the file.
    """
    from cnnlab.app.compress import compress_files
    from cnnlab.rundir import load_run

    rows = compress_files(load_run(run, device), list(images), out)
    echo_rows(rows, fmt, lambda row: f"{row['path']} -> {row['output']}: {row['bytes']} bytes, "
              f"{row['bpp']:.4f} bpp, {row['psnr']:.2f} dB", f"compressed {len(rows)} image(s) into {out}")


@click.command("decompress")
@_run_and_files("files", "Folder for the <stem>.png images.")
def decompress(run: Path, files: tuple[str, ...], out: Path, device: str, fmt: str) -> None:
    """Rebuild OUT/<stem>.png from compressed FILEs written by `cnnlab compress` with the same run RUN.

    \b
    cnnlab decompress runs/c01 packed/*.cnlc --out unpacked
    A file from another run (other weights), cut short or damaged is refused with an error.
    """
    from cnnlab.app.compress import decompress_files
    from cnnlab.rundir import load_run

    rows = decompress_files(load_run(run, device), list(files), out)
    echo_rows(rows, fmt, lambda row: f"{row['path']} -> {row['output']}",
              f"decompressed {len(rows)} file(s) into {out}")
