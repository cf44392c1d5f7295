"""`cnnlab ops`: exact convolution, pooling and transposed convolution on small matrices.

Matrices are given on the command line as rows separated by ';' (numbers by spaces or commas), e.g.
``--input "9 4 1; 1 1 1; 1 2 1"``, or as a path to a .npy / .txt / .csv file (any rank for .npy:
(C, H, W) inputs and PyTorch weight layouts work there).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import numpy as np

from cnnlab.errors import CnnlabError

_FILE_SUFFIXES = (".npy", ".txt", ".csv")


# ----------------------------------------------------------------------------------------------
# parsing: matrices, integer tuples, padding, cells
# ----------------------------------------------------------------------------------------------
def parse_matrix(text: str, name: str = "--input") -> np.ndarray:
    """A matrix from ``"1 2; 3 4"`` (rows by ';' or newlines, numbers by spaces/commas) or a file path."""
    text = text.strip()
    if text.lower().endswith(_FILE_SUFFIXES) or Path(text).is_file():
        return _load_file(Path(text), name)
    return _parse_rows(text, name)


def _load_file(path: Path, name: str) -> np.ndarray:
    if not path.is_file():
        raise CnnlabError(f"{name} file {str(path)!r} not found; give an existing .npy/.txt/.csv path "
                          f"or the numbers themselves, like \"1 2; 3 4\"")
    if path.suffix.lower() == ".npy":
        with path.open("rb") as f:
            magic = f.read(6)
        # Checked first: np.load would call any other file "pickled data" and suggest unpickling it.
        problem = "it does not start with NumPy's magic bytes: empty, or another format" \
            if magic != b"\x93NUMPY" else ""
        try:
            if not problem:
                return np.load(path, allow_pickle=False).astype(np.float64)
        except (ValueError, OSError, EOFError) as exc:  # EOFError: cut short (click would print "Aborted!")
            problem = str(exc)
        raise CnnlabError(f"{name} file {str(path)!r} is not a numeric .npy array ({problem}); "
                          f"save it with numpy.save")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CnnlabError(f"{name} file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                          "write the numbers as plain text, or save them with numpy.save as .npy") from None
    return _parse_rows(text, f"{name} file {str(path)!r}")


def _parse_rows(text: str, name: str) -> np.ndarray:
    rows = [r.strip() for r in re.split(r"[;\n]", text)]
    while rows and not rows[-1]:  # a trailing ';' or newline is harmless
        rows.pop()
    if not rows:
        raise CnnlabError(f"{name} is empty; write numbers like \"1 2; 3 4\" (rows separated by ';')")
    parsed = []
    for i, row in enumerate(rows, 1):
        tokens = [t for t in re.split(r"[\s,]+", row) if t]
        if not tokens:
            raise CnnlabError(f"row {i} of {name} is empty; remove the extra ';' (rows are separated by ';')")
        values = []
        for tok in tokens:
            try:
                values.append(float(tok))
            except ValueError:
                raise CnnlabError(f"cannot read {tok!r} in row {i} of {name} as a number; write numbers "
                                  f"separated by spaces, rows separated by ';', e.g. \"1 2; 3 4\" "
                                  f"(or give a .npy/.txt file path)") from None
        if parsed and len(values) != len(parsed[0]):
            raise CnnlabError(f"row {i} of {name} has {len(values)} numbers but row 1 has {len(parsed[0])}; "
                              f"every row needs the same count")
        parsed.append(values)
    return np.array(parsed, dtype=np.float64)


def parse_ints(text: str, name: str) -> int | tuple[int, ...]:
    """``"2"`` -> 2, ``"2,1"`` -> (2, 1)."""
    parts = [p for p in re.split(r"[\s,x]+", text.strip()) if p]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if not values:  # also "x" alone, which the split above turns into no parts
        raise CnnlabError(f"cannot read {name} {text!r}; give an integer or two separated by a comma "
                          f"(rows,cols)")
    return values[0] if len(values) == 1 else values


def parse_padding(text: str) -> int | str | tuple[int, ...]:
    """An integer, 'rows,cols', 'same' or 'valid'."""
    return text.strip().lower() if text.strip().lower() in ("same", "valid") else parse_ints(text, "--padding")


def _one_d_param(value: Any, name: str) -> Any:
    if isinstance(value, tuple):
        raise CnnlabError(f"{name} takes one integer for a 1-D op, got {value}")
    return value


def _vector_or_channels(a: np.ndarray) -> np.ndarray:
    """For 1-D ops: one row is a plain signal (L,), several rows are channels (C, L)."""
    return a[0] if a.ndim == 2 and a.shape[0] == 1 else a


# ----------------------------------------------------------------------------------------------
# shared options
# ----------------------------------------------------------------------------------------------
def _input_opt(f: Any) -> Any:
    return click.option("--input", "-i", "input_", required=True, metavar="MATRIX",
                        help='Rows separated by ";" (e.g. "9 4 1; 1 1 1; 1 2 1") or a .npy/.txt/.csv file.')(f)


def _kernel_opt(f: Any) -> Any:
    return click.option("--kernel", "-k", required=True, metavar="MATRIX",
                        help='Kernel rows separated by ";", or a .npy file in PyTorch weight layout.')(f)


def _geometry(f: Any, same: bool = True) -> Any:
    # decorators apply bottom-up: add in reverse so --help lists stride, padding, dilation
    f = click.option("--dilation", "-d", default="1", show_default=True, help="Integer or ROWS,COLS.")(f)
    f = click.option("--padding", "-p", default="0", show_default=True,
                     help="Integer, ROWS,COLS" + (", or 'same'/'valid' (same: stride 1 only, as in PyTorch)."
                                                  if same else " (zeros cropped from each side of the output)."))(f)
    return click.option("--stride", "-s", default="1", show_default=True, help="Integer or ROWS,COLS.")(f)


def _transpose_geometry(f: Any) -> Any:
    return _geometry(f, same=False)


def _explain_opt(f: Any) -> Any:
    f = click.option("--channel", "-c", default=0, show_default=True,
                     help="Output channel that --explain shows (multi-channel .npy inputs/weights).")(f)
    return click.option("--explain", "-e", metavar="I,J",
                        help="Print the worked sum of output cell I,J (1-D: I) term by term.")(f)


def _show(title: str, a: np.ndarray) -> None:
    from cnnlab.ops.explain import format_matrix

    dims = "x".join(map(str, a.shape))
    click.echo(f"{title} ({dims}):")
    click.echo(format_matrix(a))


def _cell(text: str) -> tuple[int, ...]:
    value = parse_ints(text, "--explain")
    return value if isinstance(value, tuple) else (value,)


# ----------------------------------------------------------------------------------------------
# the group and its commands
# ----------------------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def ops() -> None:
    """Exact convolution, pooling and transposed convolution, step by step (NumPy float64).

    \b
    cnnlab ops conv2d -i "9 4 1; 1 1 1; 1 2 1" -k "1 0; 0 1" --explain 0,0
    cnnlab ops shape transpose --in 16 --kernel 3 --stride 2 --padding 1 --target 32
    cnnlab ops animate conv -i "1 2 3; 4 5 6; 7 8 9" -k "1 0; 0 1" --padding 1 -o conv.gif
    """



def _print_worked(worked: Any) -> None:
    """The window over the (padded) input, then the worked sum ending in the cell's value."""
    click.echo(worked.window_text())
    click.echo(worked.text())

@ops.command("conv2d")
@_input_opt
@_kernel_opt
@_geometry
@click.option("--groups", "-g", default=1, show_default=True, help="Channel groups (multi-channel .npy inputs).")
@_explain_opt
def conv2d_cmd(input_: str, kernel: str, stride: str, padding: str, dilation: str, groups: int,
               explain: str | None, channel: int) -> None:
    """2-D convolution (cross-correlation, like PyTorch).

    Multi-channel inputs and PyTorch weight layouts (C_out, C_in/groups, kh, kw) come as .npy files.
    """
    from cnnlab import ops as O
    from cnnlab.ops.explain import explain_conv

    x, w = parse_matrix(input_, "--input"), parse_matrix(kernel, "--kernel")
    s, p, d = parse_ints(stride, "--stride"), parse_padding(padding), parse_ints(dilation, "--dilation")
    _show("output", O.conv2d(x, w, s, p, d, groups))
    if explain:
        worked = explain_conv(x, w, _cell(explain), s, p, d, groups, out_channel=channel)
        _print_worked(worked)


@ops.command("conv1d")
@_input_opt
@_kernel_opt
@_geometry
@_explain_opt
def conv1d_cmd(input_: str, kernel: str, stride: str, padding: str, dilation: str, explain: str | None,
               channel: int) -> None:
    """1-D convolution of a row (several rows: channels).

    One input row is a signal; several rows are channels, and the kernel then has one row per channel.
    """
    from cnnlab import ops as O
    from cnnlab.ops.explain import explain_conv

    x = _vector_or_channels(parse_matrix(input_, "--input"))
    w = parse_matrix(kernel, "--kernel")
    w = w[0] if w.shape[0] == 1 and x.ndim == 1 else w[None]  # (k,) or (1, C, k)
    s, d = _one_d_param(parse_ints(stride, "--stride"), "--stride"), _one_d_param(parse_ints(dilation, "--dilation"), "--dilation")
    p = _one_d_param(parse_padding(padding), "--padding")
    _show("output", O.conv1d(x, w, s, p, d))
    if explain:
        worked = explain_conv(x, w, _cell(explain), s, p, d, out_channel=channel)
        _print_worked(worked)


def _pool_opts(f: Any) -> Any:
    f = click.option("--size", "-z", default="2", show_default=True, help="Window size: integer or ROWS,COLS.")(f)
    f = click.option("--mode", "-m", type=click.Choice(["max", "min", "avg"]), default="max", show_default=True)(f)
    f = click.option("--stride", "-s", default=None, help="Integer or ROWS,COLS [default: the window size].")(f)
    f = click.option("--padding", "-p", default="0", show_default=True,
                     help="Integer or ROWS,COLS (max pads with -inf, min with +inf, avg with zeros "
                          "that count in the mean, as PyTorch).")(f)
    return f


@ops.command("pool2d")
@_input_opt
@_pool_opts
@_explain_opt
def pool2d_cmd(input_: str, size: str, mode: str, stride: str | None, padding: str, explain: str | None,
               channel: int) -> None:
    """2-D max, min or average pooling."""
    from cnnlab import ops as O
    from cnnlab.ops.explain import explain_pool

    x = parse_matrix(input_, "--input")
    k, p = parse_ints(size, "--size"), parse_padding(padding)
    s = None if stride is None else parse_ints(stride, "--stride")
    _show("output", O.pool2d(x, k, s, p, mode))
    if explain:
        worked = explain_pool(x, k, _cell(explain), s, p, mode, channel=channel)
        _print_worked(worked)


@ops.command("pool1d")
@_input_opt
@_pool_opts
@_explain_opt
def pool1d_cmd(input_: str, size: str, mode: str, stride: str | None, padding: str, explain: str | None,
               channel: int) -> None:
    """1-D max, min or average pooling.

    Several input rows are pooled as separate channels.
    """
    from cnnlab import ops as O
    from cnnlab.ops.explain import explain_pool

    x = _vector_or_channels(parse_matrix(input_, "--input"))
    k, p = _one_d_param(parse_ints(size, "--size"), "--size"), _one_d_param(parse_padding(padding), "--padding")
    s = None if stride is None else _one_d_param(parse_ints(stride, "--stride"), "--stride")
    _show("output", O.pool1d(x, k, s, p, mode))
    if explain:
        worked = explain_pool(x, k, _cell(explain), s, p, mode, one_d=True, channel=channel)
        _print_worked(worked)


@ops.command("transpose")
@_input_opt
@_kernel_opt
@_transpose_geometry
@click.option("--output-padding", "output_padding", default="0", show_default=True,
              help="Extra rows/cols at the far side; must be smaller than the stride or the dilation.")
@click.option("--groups", "-g", default=1, show_default=True)
@click.option("--method", type=click.Choice(["scatter", "zeros"]), default="scatter", show_default=True,
              help="scatter: each input stamps x*kernel; zeros: zero insertion + stride-1 conv (same numbers).")
@_explain_opt
def transpose_cmd(input_: str, kernel: str, stride: str, padding: str, dilation: str, output_padding: str,
                  groups: int, method: str, explain: str | None, channel: int) -> None:
    """2-D transposed convolution, explained as zero insertion.

    Weights in PyTorch's transposed layout (C_in, C_out/groups, kh, kw) when given as a .npy file.
    """
    from cnnlab import ops as O
    from cnnlab.ops.explain import explain_transpose

    x, w = parse_matrix(input_, "--input"), parse_matrix(kernel, "--kernel")
    s, d = parse_ints(stride, "--stride"), parse_ints(dilation, "--dilation")
    p, op = parse_ints(padding, "--padding"), parse_ints(output_padding, "--output-padding")
    _show("output", O.conv_transpose2d(x, w, s, p, op, d, groups, method=method))
    if explain:
        click.echo(explain_transpose(x, w, _cell(explain), s, p, op, d, groups, out_channel=channel).text())


@ops.command("shape")
@click.argument("kind", type=click.Choice(["conv", "pool", "transpose"]))
@click.option("--in", "n", type=int, required=True, help="Input size along one axis.")
@click.option("--kernel", "-k", type=int, required=True, help="Kernel (window) size.")
@click.option("--stride", "-s", type=int, default=None, help="Stride [default: 1; pool: the window size].")
@click.option("--padding", "-p", default="0", show_default=True,
              help="Padding per side; conv also takes 'same' (any stride, Keras-style for stride > 1) or 'valid'.")
@click.option("--dilation", "-d", type=int, default=1, show_default=True)
@click.option("--output-padding", "output_padding", type=int, default=0, show_default=True)
@click.option("--target", "-t", type=int, default=None, help="transpose: solve for the output_padding that gives this size.")
def shape_cmd(kind: str, n: int, kernel: int, stride: int | None, padding: str, dilation: int,
              output_padding: int, target: int | None) -> None:
    """Output-size arithmetic of conv, pool, transpose.

    One axis at a time, with the numbers filled in; --target solves a transposed conv's output_padding.
    """
    from cnnlab.ops import shape as S

    s = stride if stride is not None else (kernel if kind == "pool" else 1)
    if kind == "transpose":
        p = parse_ints(padding, "--padding")
        if not isinstance(p, int):
            raise CnnlabError("--padding takes one integer for a transposed conv")
        if target is not None:
            output_padding = S.solve_output_padding(n, kernel, s, p, target, dilation)
            click.echo(f"solver: output_padding = {target} - ((n-1)*s - 2p + d*(k-1) + 1) = {output_padding} "
                       f"(valid: smaller than the stride {s} or the dilation {dilation})")
        for line in S.TransposeArithmetic(n, kernel, s, p, output_padding, dilation).lines():
            click.echo(line)
        return
    if target is not None:
        raise CnnlabError("--target is for 'shape transpose'; for conv/pool change --padding or --stride")
    pad = parse_padding(padding)
    if pad == "same":
        left, right = S.same_padding(n, kernel, s, dilation)
        style = "PyTorch (stride 1)" if s == 1 else "Keras/TensorFlow (stride > 1, output ceil(n/s))"
        click.echo(f"'same' padding, {style}: left {left}, right {right}")
        pads: tuple[int, int] = (left, right)
    else:
        pv = 0 if pad == "valid" else pad
        if not isinstance(pv, int):
            raise CnnlabError("--padding takes one integer (the shape arithmetic is per axis)")
        pads = (pv, pv)
    out = S.conv_output_size(n, kernel, s, pads, dilation)
    kd = f"{dilation}*({kernel}-1)" if dilation > 1 else f"({kernel}-1)"
    click.echo(f"{kind}: n={n}, k={kernel}, s={s}, p={pads[0]}" + (f"+{pads[1]}" if pads[1] != pads[0] else "")
               + (f", d={dilation}" if dilation > 1 else ""))
    click.echo(f"out = floor((n + p_left + p_right - d*(k-1) - 1) / s) + 1 = "
               f"floor(({n} + {pads[0]} + {pads[1]} - {kd} - 1) / {s}) + 1 = {out}")


@ops.command("receptive-field")
@click.option("--layers", "-l", required=True,
              help="Comma-separated stack: conv<k> or pool<k>, then optional s<stride> d<dilation> p<padding>; "
                   "pool strides default to k. Example: 'conv3,conv3s2,pool2,conv3d2'.")
@click.option("--in", "n", type=int, default=None, help="Input size, to also show each output size.")
def receptive_field_cmd(layers: str, n: int | None) -> None:
    """Receptive field and jump of a stack of conv/pool layers.

    The jump is the number of input cells between neighbouring outputs after each layer.
    """
    from rich.console import Console
    from rich.table import Table

    from cnnlab.ops.shape import receptive_field

    rows = receptive_field(layers, n)
    table = Table(title="rf_l = rf_(l-1) + d*(k-1)*jump_(l-1);  jump_l = jump_(l-1)*s")
    for col in ("layer", "k", "s", "d", "jump", "receptive field", *(["output size"] if n else [])):
        table.add_column(col, justify="right" if col != "layer" else "left")
    for r in rows:
        table.add_row(r.layer.name, str(r.layer.k), str(r.layer.s), str(r.layer.d), str(r.jump), str(r.rf),
                      *([str(r.size)] if n else []))
    Console().print(table)


@ops.command("animate")
@click.argument("kind", type=click.Choice(["conv", "pool", "transpose"]))
@_input_opt
@click.option("--kernel", "-k", default=None, metavar="MATRIX", help="Kernel rows (conv, transpose).")
@click.option("--stride", "-s", default=None, help="Integer or ROWS,COLS [default: 1; pool: the window size].")
@click.option("--padding", "-p", default="0", show_default=True)
@click.option("--dilation", "-d", default="1", show_default=True)
@click.option("--size", "-z", default="2", show_default=True, help="Pool window size.")
@click.option("--mode", "-m", type=click.Choice(["max", "min", "avg"]), default="max", show_default=True)
@click.option("--output-padding", "output_padding", default="0", show_default=True)
@click.option("--fps", type=float, default=2.0, show_default=True, help="Frames (output cells) per second.")
@click.option("--out", "-o", "out", required=True, type=click.Path(dir_okay=False), help="GIF file to write.")
def animate_cmd(kind: str, input_: str, kernel: str | None, stride: str | None, padding: str, dilation: str,
                size: str, mode: str, output_padding: str, fps: float, out: str) -> None:
    """Draw the sliding window as a GIF.

    One frame per output cell: padding grey, inserted zeros blue, the window orange, its sum below.
    """
    from cnnlab.render.animate import animate

    x = parse_matrix(input_, "--input")
    params: dict[str, Any] = {"padding": parse_padding(padding), "dilation": parse_ints(dilation, "--dilation")}
    if stride is not None:
        params["stride"] = parse_ints(stride, "--stride")
    if kind == "pool":
        params.update(size=parse_ints(size, "--size"), mode=mode)
        w = None
    else:
        if kernel is None:
            raise CnnlabError(f"animate {kind} needs --kernel, e.g. --kernel \"1 0; 0 1\"")
        w = parse_matrix(kernel, "--kernel")
        if kind == "transpose":
            params["output_padding"] = parse_ints(output_padding, "--output-padding")
    path = animate(kind, x, w, out, fps, **params)
    from PIL import Image

    with Image.open(path) as im:
        click.echo(f"wrote {path} ({im.n_frames} frames, {im.size[0]}x{im.size[1]} px)")


@ops.command("tour")
def tour_cmd() -> None:
    """A short textbook walk-through of the exact ops.

    A worked convolution, pooling, a transposed conv by zero insertion, and the shape arithmetic.
    """
    from rich.console import Console

    from cnnlab.ops.tour import run_tour

    run_tour(Console().print)
