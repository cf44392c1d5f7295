"""Learned image compression: a convolutional auto-encoder with a quantised latent and a learned
factorized entropy model (Balle, Laparra & Simoncelli 2017; the entropy model of Balle et al. 2018,
appendix 6.1, the "bmshj2018-factorized" model of CompressAI).

- Analysis transform g_a: four 5x5 convolutions with stride 2 (C -> N -> N -> N -> M channels), GDN
  after all but the last: an image (N, C, H, W) becomes a latent y (N, M, H/16, W/16).
- Quantisation: y_hat = round(y) when evaluating (what the file stores); in training, y + u with u
  uniform in [-0.5, 0.5): rounding has zero gradient, the noise has the same effect on the density
  (the density of y + u is the quantised probability mass smoothed over the bin), and it keeps the
  gradient (Balle 2017, section 2.2). ``quantizer="mixed"`` keeps the noise for the rate only and gives
  the decoder round(y) with a straight-through gradient (Minnen & Singh 2020; CompressAI's default for
  its newer models): the decoder then trains on exactly the values a file stores, instead of noisy
  ones it never sees again.
- Entropy model: per latent channel, a learned cumulative density c(v) (a tiny monotone network,
  :class:`FactorizedDensity`); the probability of the integer bin around v is c(v + .5) - c(v - .5),
  and its -log2 is the number of bits an arithmetic coder spends on v. The same model gives the
  training rate and the coder's tables (``pmf``), so what is counted is what is written.
- Synthesis transform g_s: four 5x5 transposed convolutions with stride 2 (exactly doubling), inverse
  GDN after all but the last: y_hat -> the reconstruction (N, C, H', W'), cropped to H x W.

Inputs of any size: the image is padded (replicating its border) up to a multiple of 16 and the
reconstruction cropped back, so every input (N, C, H, W) in [0, 1] gives (N, C + 1, H, W): channels
0..C-1 the reconstruction (not clamped; clamp for display), channel C the *rate map*: the bits of every
latent position spread evenly over the image pixels it stands for, so that the map's sum over an image
is its total bits and its mean is bits per pixel (bpp). A compressor has no head to swap:
``forward_features`` is the whole auto-encoder and ``forward_head`` the identity, so the registry's
contract (``forward == forward_head(forward_features)``) holds.

The entropy model always runs in fp32 (likelihoods of 1e-6 do not survive bf16), whatever autocast.

CPU size: ``compress_small`` (N=64, M=96) costs ~0.35 G mult-adds per 128x128 patch; ``compress_factorized``
is CompressAI's size for its low-rate qualities (N=128, M=192).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.layers import annotate_names
from cnnlab.models._registry import Backbone, register_model

#: (kernel, stride, padding) of every conv of g_a; the transposed convs of g_s undo exactly this
DOWN = (5, 2, 2)
STAGES = 4
STRIDE = 2**STAGES  # 16 pixels per latent position
#: the smallest likelihood counted (1e-9 = 29.9 bits): keeps -log2 finite for far-out noisy values
LIKELIHOOD_BOUND = 1e-9
#: the factor on the last encoder conv's initial weights (see FactorizedCompressor.__init__)
LATENT_GAIN = 10.0
#: the density mass left out of the coder's alphabet on each side (coded through an escape symbol)
TAIL_MASS = 1e-9


def _softplus_inverse(x: float) -> float:
    return math.log(math.expm1(x))


def fp32(device: torch.device) -> contextlib.AbstractContextManager:
    """A region without autocast (on the meta device, used for shape checks, there is none)."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


class GDN(nn.Module):
    """Generalized divisive normalization (Balle et al. 2016): y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2);
    ``inverse=True`` multiplies instead (IGDN, the synthesis transform's inverse). beta and gamma are
    kept positive as softplus of free parameters; the start is beta = 1, gamma = 0.1 I (Balle's)."""

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.full((channels,), _softplus_inverse(1.0)))
        # off-diagonal softplus(-10) = 4.5e-5: nearly 0 at the start, yet with a gradient
        gamma = torch.full((channels, channels), -10.0)
        gamma.fill_diagonal_(_softplus_inverse(0.1))
        self.gamma = nn.Parameter(gamma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        gamma = F.softplus(self.gamma).reshape(c, c, 1, 1)
        norm = F.conv2d(x * x, gamma.to(x.dtype), (F.softplus(self.beta) + 1e-6).to(x.dtype))  # (N, C, H, W)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


class FactorizedDensity(nn.Module):
    """One learned cumulative density per channel: c(v) = sigmoid(f_K(...f_1(v))) with
    f_k(x) = H_k x + b_k followed by x + tanh(a_k) * tanh(x) for k < K. softplus keeps every H_k positive
    and tanh(a_k) > -1 keeps every f_k increasing, so c rises monotonically from 0 to 1 (Balle et al. 2018,
    appendix 6.1; ``filters`` (3, 3, 3) and ``init_scale`` 10 are theirs)."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0) -> None:
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for k in range(len(dims) - 1):
            # the start: a logistic of spread ~init_scale, centred near 0
            value = _softplus_inverse(1 / scale / dims[k + 1])
            self.matrices.append(nn.Parameter(torch.full((channels, dims[k + 1], dims[k]), value)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[k + 1], 1) - 0.5))
            if k < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[k + 1], 1)))

    def logits(self, v: torch.Tensor) -> torch.Tensor:
        """The pre-sigmoid cumulative density at values ``v`` (M, 1, L) -> (M, 1, L), fp32."""
        x = v.float()
        for k, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            x = torch.matmul(F.softplus(matrix.float()), x) + bias.float()  # (M, d_k+1, L)
            if k < len(self.factors):
                x = x + torch.tanh(self.factors[k].float()) * torch.tanh(x)
        return x

    def likelihood(self, v: torch.Tensor) -> torch.Tensor:
        """P(bin around v) = c(v + .5) - c(v - .5) for values ``v`` (M, 1, L), bounded below by
        LIKELIHOOD_BOUND. The difference is taken on the side of the density where both sigmoids are
        small (the sign flip), so that far in a tail it is not 1 - 1 in float32."""
        lower, upper = self.logits(v - 0.5), self.logits(v + 0.5)
        # not -sign(lower + upper) (CompressAI's): at a bin centred on the median that is 0 and the mass 0
        sign = torch.where(lower + upper > 0, -1.0, 1.0).detach()
        found = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return found.clamp_min(LIKELIHOOD_BOUND)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Likelihoods of a latent (N, M, h, w), same shape, fp32."""
        n, m, h, w = y.shape
        with fp32(y.device):
            v = y.float().permute(1, 0, 2, 3).reshape(m, 1, -1)  # (M, 1, N*h*w): one row per channel
            found = self.likelihood(v)
        return found.reshape(m, n, h, w).permute(1, 0, 2, 3)  # (N, M, h, w)

    @torch.no_grad()
    def tables(self, tail: float = TAIL_MASS) -> list[tuple[int, torch.Tensor]]:
        """The entropy coder's table per channel: (low, probs) where probs (float64, CPU) holds the
        probability of every integer low..high, then one *escape* entry: the mass of both tails beyond.
        [low, high] is where the density leaves less than ``tail`` on each side, so the table is the
        whole density (what is counted is what is coded) and a value outside is coded as the escape
        followed by its raw 16 bits. Computed in fp32 from the weights alone: encoder and decoder rebuild
        the same tables."""
        device = self.biases[0].device
        reach = 64
        while True:  # widen the integer grid -reach..reach until every channel's tails fit inside it
            with fp32(device):
                edges = torch.arange(-reach, reach + 2, dtype=torch.float32, device=device) - 0.5  # (2R + 2,)
                logits = self.logits(edges.expand(self.channels, 1, -1).contiguous())[:, 0]  # (M, 2R + 2)
            # the mass below and above every edge (sigmoid(-x) for the upper side: 1 - sigmoid(x) is 0 in fp32)
            below, above = torch.sigmoid(logits).double().cpu(), torch.sigmoid(-logits).double().cpu()
            if reach >= 2**15 or bool(((below[:, 0] < tail) & (above[:, -1] < tail)).all()):
                break
            reach *= 2
        with fp32(device):
            grid = torch.arange(-reach, reach + 1, dtype=torch.float32, device=device)
            probs = self.likelihood(grid.expand(self.channels, 1, -1).contiguous())[:, 0].double().cpu()  # (M, 2R + 1)
        inside = (below[:, 1:] >= tail) & (above[:, :-1] >= tail)  # (M, 2R + 1): bins not wholly in a tail
        found = []
        for c in range(self.channels):
            bins = inside[c].nonzero()[:, 0]
            first, last = (int(bins[0]), int(bins[-1])) if len(bins) else (reach, reach)
            escape = max(float(below[c, first]) + float(above[c, last + 1]), LIKELIHOOD_BOUND)
            found.append((first - reach, torch.cat([probs[c, first:last + 1], torch.tensor([escape], dtype=torch.float64)])))
        return found


def _down(in_channels: int, out_channels: int) -> nn.Conv2d:
    kernel, stride, pad = DOWN
    return nn.Conv2d(in_channels, out_channels, kernel, stride, pad)


def _up(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    # output_padding 1: (n - 1) * 2 - 2 * 2 + 5 + 1 = 2n, exactly the size the conv halved
    kernel, stride, pad = DOWN
    return nn.ConvTranspose2d(in_channels, out_channels, kernel, stride, pad, output_padding=1)


def bits_map(likelihoods: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per-latent likelihoods (N, M, h, w) -> the rate map (N, 1, H, W): each latent position's bits
    (sum over channels of -log2 p) spread evenly over the image pixels of its 16x16 block (blocks on the
    bottom/right edge cover fewer real pixels), so the map sums to the image's total bits."""
    h_img, w_img = size
    bits = -torch.log2(likelihoods).sum(dim=1, keepdim=True)  # (N, 1, h, w)
    h, w = bits.shape[-2:]
    rows = (h_img - STRIDE * torch.arange(h, device=bits.device)).clamp(max=STRIDE)  # real pixel rows per block
    cols = (w_img - STRIDE * torch.arange(w, device=bits.device)).clamp(max=STRIDE)
    density = bits / (rows[:, None] * cols[None, :]).to(bits.dtype)  # bits per real pixel
    spread = density.repeat_interleave(STRIDE, dim=2).repeat_interleave(STRIDE, dim=3)
    return spread[..., :h_img, :w_img]


class FactorizedCompressor(Backbone):
    """g_a, the quantiser, the factorized entropy model and g_s (see the module doc).

    Args:
        in_channels: image channels C (1 or 3).
        width: channels N of the hidden layers.
        latent: channels M of the latent.
        init_scale: the spread of the entropy model's starting densities (Balle's 10 costs ~2 bpp at the
            start, which a long run unlearns; a short CPU run starts better near the untrained latent's ~1).
        quantizer: in training, "noise" (the decoder and the rate both see y + u) or "mixed" (the rate
            sees y + u, the decoder round(y) with a straight-through gradient). Evaluation always rounds.
    """

    QUANTIZERS = ("noise", "mixed")

    def __init__(self, in_channels: int = 3, *, width: int = 64, latent: int = 96, init_scale: float = 10.0,
                 quantizer: str = "noise") -> None:
        super().__init__()
        if width < 1 or latent < 1:
            raise CnnlabError(f"compressor: width and latent must be >= 1, got {width} and {latent}")
        if quantizer not in self.QUANTIZERS:
            raise CnnlabError(f"compressor: --model-arg quantizer={quantizer!r} is not one of "
                              f"{', '.join(self.QUANTIZERS)}")
        self.quantizer = quantizer
        self.in_channels = self.num_classes = in_channels  # the reconstruction's channels
        self.out_channels = in_channels + 1  # + the rate map
        self.width, self.latent = width, latent
        chans = (in_channels, *([width] * (STAGES - 1)), latent)
        self.encoder = nn.Sequential()
        self.decoder = nn.Sequential()
        for k in range(STAGES):
            self.encoder.append(_down(chans[k], chans[k + 1]))
            if k < STAGES - 1:
                self.encoder.append(GDN(chans[k + 1]))
        for k in reversed(range(STAGES)):
            self.decoder.append(_up(chans[k + 1], chans[k]))
            if k > 0:
                self.decoder.append(GDN(chans[k], inverse=True))
        self.entropy = FactorizedDensity(latent, init_scale=init_scale)
        with torch.no_grad():
            # start at mid-grey, not black: the first steps then learn content, not the mean
            self.decoder[-1].bias.fill_(0.5)
            # PyTorch's default init gives a latent of std ~0.06 on photos, drowned by the training noise
            # (std 0.29): the decoder saw almost nothing for hundreds of steps. x LATENT_GAIN: std ~0.6.
            self.encoder[-1].weight.mul_(LATENT_GAIN)
            self.encoder[-1].bias.mul_(LATENT_GAIN)
        annotate_names(self)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image (N, C, H, W) in [0, 1] -> the unquantised latent y (N, M, ceil(H/16), ceil(W/16)), fp32."""
        h, w = x.shape[-2:]
        pad = (0, -w % STRIDE, 0, -h % STRIDE)  # bottom and right, up to a multiple of 16
        x = F.pad(x, pad, mode="replicate") if any(pad) else x
        return self.encoder(x).float()

    def quantize(self, y: torch.Tensor) -> torch.Tensor:
        """Rounding when evaluating; uniform noise in [-0.5, 0.5) when training (see the module doc)."""
        if self.training:
            return y + torch.rand_like(y) - 0.5
        return torch.round(y)

    def decode(self, y_hat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Quantised latent (N, M, h, w) -> the reconstruction (N, C, H, W) cropped to ``size``."""
        return self.decoder(y_hat)[..., : size[0], : size[1]]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[-2], x.shape[-1])
        y = self.encode(x)
        y_hat = self.quantize(y)  # (N, M, h, w): what the rate is counted on
        decoded = y_hat
        if self.training and self.quantizer == "mixed":
            decoded = y + (torch.round(y) - y).detach()  # round(y), with the identity's gradient
        x_hat = self.decode(decoded.to(x.dtype), size)  # (N, C, H, W)
        rate = bits_map(self.entropy(y_hat), size)  # (N, 1, H, W), fp32
        return torch.cat([x_hat.float(), rate], dim=1)  # (N, C + 1, H, W)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return features


@register_model(tags=("compress",))
def compress_small(in_channels: int = 3, **kwargs) -> FactorizedCompressor:
    """Balle 2017-style factorized-prior compressor sized for a CPU: N=64, M=96 (~0.9M parameters)."""
    return FactorizedCompressor(in_channels, **{"width": 64, "latent": 96, **kwargs})


@register_model(tags=("compress", "paper"))
def compress_factorized(in_channels: int = 3, **kwargs) -> FactorizedCompressor:
    """The factorized-prior model at CompressAI's low-rate size (bmshj2018-factorized q1-5): N=128, M=192."""
    return FactorizedCompressor(in_channels, **{"width": 128, "latent": 192, **kwargs})
