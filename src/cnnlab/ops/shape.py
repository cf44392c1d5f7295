"""Shape arithmetic of convolution, pooling and transposed convolution (pure Python, no torch).

Every formula here works on one spatial axis; 2-D layers apply it to height and width separately.
Notation follows the lecture: input size n, kernel k, stride s, padding p (each side), dilation d,
output padding op. The effective (dilated) kernel spans ``d*(k-1)+1`` input cells.

- convolution / pooling:   out = floor((n + p_left + p_right - d*(k-1) - 1) / s) + 1
- transposed convolution:  out = (n-1)*s - 2p + d*(k-1) + op + 1

'same' padding comes in two flavours, both offered here:

- PyTorch (``padding="same"``): only for stride 1; total padding ``d*(k-1)``, the odd extra cell goes
  on the right/bottom. See :func:`torch_same_padding`.
- Keras/TensorFlow (any stride): output size ``ceil(n/s)``, total padding
  ``max((ceil(n/s)-1)*s + d*(k-1) + 1 - n, 0)``, the odd extra cell on the right/bottom.
  See :func:`same_padding`; pass its (left, right) pairs to the ops as explicit padding.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from cnnlab.errors import CnnlabError

Pads = tuple[tuple[int, int], ...]


# ----------------------------------------------------------------------------------------------
# argument normalisation (shared by the NumPy ops so every op validates the same way)
# ----------------------------------------------------------------------------------------------
def as_tuple(value: int | tuple[int, ...] | list[int], ndim: int, name: str, minimum: int) -> tuple[int, ...]:
    """``value`` as a tuple of ``ndim`` ints, each >= ``minimum``, or a CnnlabError naming ``name``."""
    items = tuple(value) if isinstance(value, tuple | list) else (value,) * ndim
    if len(items) != ndim:
        raise CnnlabError(f"{name} has {len(items)} values {items} but the op has {ndim} spatial axes; "
                          f"give one integer or {ndim} integers")
    out = tuple(_int(v, name) for v in items)
    for v in out:
        if v < minimum:
            raise CnnlabError(f"{name} must be a positive integer, got {v}; use {name} 1 or more" if minimum == 1
                              else f"{name} must be >= {minimum}, got {v}")
    return out


def _int(value: object, name: str) -> int:
    """An integral number as int (3.0 is fine), else a CnnlabError naming the argument."""
    try:
        ok = not isinstance(value, bool) and float(value).is_integer()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise CnnlabError(f"{name} must be an integer, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def as_pads(padding: int | tuple | list, ndim: int, name: str = "padding") -> Pads:
    """Padding as ``((left, right), ...)`` per spatial axis.

    Accepts an int (same on every side), one int per axis (symmetric), or one (left, right) pair per
    axis (asymmetric, e.g. from :func:`same_padding`). Negative values are rejected.
    """
    if isinstance(padding, tuple | list) and len(padding) == ndim:
        pairs = []
        for item in padding:
            if isinstance(item, tuple | list):
                if len(item) != 2:
                    raise CnnlabError(f"{name} pair {tuple(item)} must be (left, right)")
                pairs.append(tuple(item))
            else:
                pairs.append((item, item))
    elif isinstance(padding, tuple | list):
        raise CnnlabError(f"{name} has {len(padding)} values {tuple(padding)} but the op has {ndim} "
                          f"spatial axes; give one integer, {ndim} integers or {ndim} (left, right) pairs")
    else:
        pairs = [(padding, padding)] * ndim
    out = []
    for left, right in pairs:
        lr = (_int(left, name), _int(right, name))
        if min(lr) < 0:
            raise CnnlabError(f"{name} must be >= 0, got {min(lr)}; negative padding would crop the input, "
                              f"use {name} 0 (or crop the input yourself)")
        out.append(lr)
    return tuple(out)


def effective_kernel(k: int, d: int = 1) -> int:
    """Input cells spanned by a kernel of size k with dilation d: d*(k-1)+1."""
    return d * (k - 1) + 1


# ----------------------------------------------------------------------------------------------
# output sizes
# ----------------------------------------------------------------------------------------------
def conv_output_size(n: int, k: int, s: int = 1, p: int | tuple[int, int] = 0, d: int = 1,
                     axis: str = "input") -> int:
    """Output length of a convolution (or pooling window) along one axis.

    ``p`` is the padding on each side, or a (left, right) pair. Raises a CnnlabError when the
    (dilated) kernel does not fit in the padded input.
    """
    s, d = as_tuple(s, 1, "stride", 1)[0], as_tuple(d, 1, "dilation", 1)[0]
    k = as_tuple(k, 1, "kernel size", 1)[0]
    (left, right), = as_pads((p,) if isinstance(p, tuple | list) else p, 1)
    padded = n + left + right
    span = effective_kernel(k, d)
    if span > padded:
        dil = f" (kernel {k} with dilation {d})" if d > 1 else ""
        raise CnnlabError(f"kernel spans {span} cells{dil} but the padded {axis} is only {padded} "
                          f"({n} + padding {left}+{right}); use a smaller kernel or "
                          f"dilation, or pad by at least {math.ceil((span - n) / 2)} on each side")
    return (padded - span) // s + 1


def pool_output_size(n: int, k: int, s: int | None = None, p: int | tuple[int, int] = 0, d: int = 1) -> int:
    """Output length of a pooling window along one axis (stride defaults to the window size)."""
    return conv_output_size(n, k, k if s is None else s, p, d)


def conv_transpose_output_size(n: int, k: int, s: int = 1, p: int = 0, op: int = 0, d: int = 1) -> int:
    """Output length of a transposed convolution: (n-1)*s - 2p + d*(k-1) + op + 1."""
    s, d = as_tuple(s, 1, "stride", 1)[0], as_tuple(d, 1, "dilation", 1)[0]
    k = as_tuple(k, 1, "kernel size", 1)[0]
    as_pads(p, 1)  # rejects negative padding
    check_output_padding(op, s, d)
    out = (n - 1) * s - 2 * p + d * (k - 1) + op + 1
    if out < 1:
        raise CnnlabError(f"transposed conv output would be {out} cells ((n-1)*s - 2p + d*(k-1) + op + 1 "
                          f"with n={n}, s={s}, p={p}, d={d}, k={k}, op={op}); reduce the padding p")
    return out


def check_output_padding(op: int, s: int, d: int) -> None:
    """PyTorch's rule: output_padding must be smaller than the stride or the dilation."""
    if op < 0:
        raise CnnlabError(f"output_padding must be >= 0, got {op}")
    if op >= s and op >= d:
        raise CnnlabError(f"output_padding={op} must be smaller than the stride ({s}) or the dilation ({d}); "
                          f"a larger one would add rows no input reaches: use output_padding <= {max(s, d) - 1}")


# ----------------------------------------------------------------------------------------------
# 'same' padding
# ----------------------------------------------------------------------------------------------
def torch_same_padding(k: int, d: int = 1) -> tuple[int, int]:
    """PyTorch's ``padding='same'`` (stride 1): total d*(k-1), the odd extra cell on the right."""
    total = d * (k - 1)
    return total // 2, total - total // 2


def same_padding(n: int, k: int, s: int = 1, d: int = 1) -> tuple[int, int]:
    """Keras/TensorFlow 'same' padding (any stride): (left, right) so that out = ceil(n/s).

    For stride 1 this equals :func:`torch_same_padding`. For stride > 1 the total depends on the
    input size n, and may be odd: the extra cell goes on the right (bottom), as in TensorFlow.
    """
    s = as_tuple(s, 1, "stride", 1)[0]
    out = -(-n // s)
    total = max((out - 1) * s + effective_kernel(k, d) - n, 0)
    return total // 2, total - total // 2


# ----------------------------------------------------------------------------------------------
# transposed convolution: the lecture's construction and the output_padding solver
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransposeArithmetic:
    """A transposed conv along one axis, rewritten as a stride-1 conv over a zero-inserted input.

    Insert ``z = s-1`` zeros between input cells, pad ``p' = d*(k-1) - p`` on each side (plus
    ``op`` on the far side), then convolve with stride ``s' = 1`` and the flipped kernel.
    """

    n: int
    k: int
    s: int
    p: int
    op: int
    d: int

    @property
    def z(self) -> int:
        return self.s - 1

    @property
    def p_prime(self) -> int:
        return self.d * (self.k - 1) - self.p

    @property
    def stretched(self) -> int:
        """Length after zero insertion: n + (n-1)*z."""
        return self.n + (self.n - 1) * self.z

    @property
    def padded(self) -> int:
        return self.stretched + 2 * self.p_prime + self.op

    @property
    def out(self) -> int:
        return conv_transpose_output_size(self.n, self.k, self.s, self.p, self.op, self.d)

    def lines(self) -> list[str]:
        """The arithmetic as text, with the numbers filled in."""
        n, k, s, p, op, d = self.n, self.k, self.s, self.p, self.op, self.d
        pp = "d*(k-1)-p" if d > 1 else "k-p-1"
        pnum = f"{d}*({k}-1)-{p}" if d > 1 else f"{k}-{p}-1"
        kd = f"{d}*({k}-1)" if d > 1 else f"({k}-1)"
        out = [
            f"transposed conv: n={n}, k={k}, s={s}, p={p}, output_padding={op}" + (f", d={d}" if d > 1 else ""),
            f"as a stride-1 conv: s' = 1, z = s-1 = {self.z} zeros between inputs, "
            f"p' = {pp} = {pnum} = {self.p_prime} on each side" + (f" (+{op} on the far side)" if op else ""),
            f"zero-inserted length: n + (n-1)*z = {n} + {n - 1}*{self.z} = {self.stretched}; "
            f"padded: {self.stretched} + 2*{self.p_prime}" + (f" + {op}" if op else "") + f" = {self.padded}",
            f"output = (n-1)*s - 2p + {'d*(k-1)' if d > 1 else '(k-1)'} + output_padding + 1 "
            f"= ({n}-1)*{s} - 2*{p} + {kd} + {op} + 1 = {self.out}",
        ]
        if self.p_prime < 0:
            out.append(f"p' < 0: the construction crops {-self.p_prime} cell(s) from each side instead of padding")
        return out


def solve_output_padding(n: int, k: int, s: int, p: int, target: int, d: int = 1) -> int:
    """The output_padding that makes a transposed conv produce ``target`` cells from ``n``.

    Raises a CnnlabError "impossible, because ..." when no valid output_padding reaches it, with a
    padding that would work when there is one.
    """
    s, d = as_tuple(s, 1, "stride", 1)[0], as_tuple(d, 1, "dilation", 1)[0]
    as_pads(p, 1)
    base = (n - 1) * s - 2 * p + d * (k - 1) + 1
    op = target - base
    limit = max(s, d) - 1  # output_padding must be < stride or < dilation
    if 0 <= op <= limit:
        return op
    reason = (f"with output_padding=0 the output is already {base} > {target}" if op < 0 else
              f"it needs output_padding={op}, but output_padding must be smaller than the stride ({s}) "
              f"or the dilation ({d})")
    msg = (f"impossible, because {reason}: n={n}, k={k}, s={s}, p={p}, d={d} reach only "
           f"{base}..{base + limit}")
    hint = _padding_that_reaches(n, k, s, d, target, limit)
    raise CnnlabError(msg + (f"; padding={hint[0]} with output_padding={hint[1]} reaches {target}" if hint
                             else "; change the stride or kernel size"))


def _padding_that_reaches(n: int, k: int, s: int, d: int, target: int, limit: int) -> tuple[int, int] | None:
    full = (n - 1) * s + d * (k - 1) + 1
    for p in range(0, full // 2 + 1):
        op = target - (full - 2 * p)
        if 0 <= op <= limit:
            return p, op
    return None


# ----------------------------------------------------------------------------------------------
# receptive field of a stack
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerSpec:
    """One layer of a stack for receptive-field arithmetic."""

    kind: str  # "conv" or "pool"
    k: int
    s: int = 1
    d: int = 1
    p: int = 0

    @property
    def name(self) -> str:
        extra = "".join(f"{c}{v}" for c, v, default in (("s", self.s, self.k if self.kind == "pool" else 1),
                                                        ("d", self.d, 1), ("p", self.p, 0)) if v != default)
        return f"{self.kind}{self.k}{extra}"


@dataclass(frozen=True)
class FieldRow:
    """Receptive field after one layer: rf input cells, jump = input cells between adjacent outputs."""

    layer: LayerSpec
    rf: int
    jump: int
    size: int | None  # output size when an input size was given


_LAYER_RE = re.compile(r"^(conv|pool)(\d+)((?:[sdp]\d+)*)$")


def parse_layers(text: str) -> list[LayerSpec]:
    """Parse ``"conv3,conv3s2,pool2,conv3d2p2"``: kind + kernel, then optional s<stride> d<dilation> p<pad>.

    Pool strides default to the window size (``pool2`` = 2x2 window, stride 2), conv strides to 1.
    """
    layers = []
    for raw in [t.strip() for t in text.split(",") if t.strip()]:
        m = _LAYER_RE.match(raw.lower())
        if not m:
            raise CnnlabError(f"cannot read layer {raw!r}; write conv<k> or pool<k> followed by optional "
                              f"s<stride> d<dilation> p<padding>, e.g. 'conv3,conv3s2,pool2,conv3d2p2'")
        kind, k = m.group(1), int(m.group(2))
        opts = {key: int(val) for key, val in re.findall(r"([sdp])(\d+)", m.group(3))}
        spec = LayerSpec(kind, k, opts.get("s", k if kind == "pool" else 1), opts.get("d", 1), opts.get("p", 0))
        as_tuple(spec.k, 1, f"kernel size of {raw!r}", 1)
        as_tuple(spec.s, 1, f"stride of {raw!r}", 1)
        as_tuple(spec.d, 1, f"dilation of {raw!r}", 1)
        layers.append(spec)
    if not layers:
        raise CnnlabError("no layers given; write e.g. 'conv3,conv3s2,pool2'")
    return layers


def receptive_field(layers: list[LayerSpec] | str, n: int | None = None) -> list[FieldRow]:
    """Receptive field and jump after each layer of a stack (optionally output sizes for input n).

    rf_l = rf_{l-1} + (d*(k-1)) * jump_{l-1};  jump_l = jump_{l-1} * s.  Padding does not change
    the receptive field, only where it sits.
    """
    if isinstance(layers, str):
        layers = parse_layers(layers)
    rows, rf, jump, size = [], 1, 1, n
    for layer in layers:
        rf += layer.d * (layer.k - 1) * jump
        jump *= layer.s
        if size is not None:
            size = conv_output_size(size, layer.k, layer.s, layer.p, layer.d, axis=f"input of {layer.name}")
        rows.append(FieldRow(layer, rf, jump, size))
    return rows
