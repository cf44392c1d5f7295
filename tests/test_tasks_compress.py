"""Learned compression: the entropy model's bits against closed-form likelihoods, real files that decode
to exactly the model's own rounded reconstruction, file sizes against the counted bits, refused files
(truncated, damaged, another run's), the JPEG baseline, bad options, and train -> eval -> compress ->
decompress -> predict from the CLI."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cnnlab.app import compress as codec
from cnnlab.cli import cli
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models.compress import LIKELIHOOD_BOUND, FactorizedDensity, bits_map
from cnnlab.rundir import LoadedRun, Normalize
from cnnlab.tasks import get_task
from cnnlab.tasks.compress import jpeg_at_bpp, jpeg_bytes
from cnnlab.tasks.scores import to_levels
from cnnlab.train.config import TrainConfig
from cnnlab.train.runner import fit

CP = TrainConfig(task="compress", data="builtin:shapes?n=48&size=32", model="compress_small",
                 model_kwargs={"width": 16, "latent": 8}, epochs=4, repeat=4, batch_size=8, precision="fp32",
                 lr=3e-3, threads=1, task_options={"lmbda": 0.01, "patch": 32}, augment="none")
#: the coder's final state: ANS flushes its 64-bit head as two 32-bit words (measured 20-48 bits)
CODER_OVERHEAD_BITS = 64
#: an escaped (tail) latent value costs its 16 raw bits on top of the escape symbol's
ESCAPE_BITS = 16


def _run(seed: int = 0, spread: float = 30.0, latent: int = 8) -> LoadedRun:
    """A run in memory around an untrained model whose latent is spread over many integers (its last
    encoder conv scaled by ``spread``): no training needed to exercise the coder."""
    torch.manual_seed(seed)
    model = create_model("compress_small", width=16, latent=latent).eval()
    with torch.no_grad():
        model.encoder[-1].weight.mul_(spread)
    config = {"task": "compress", "preprocess": {"in_channels": 3}}
    return LoadedRun(Path(f"run{seed}"), model, config, get_task("compress"), Normalize.identity(3), [],
                     torch.device("cpu"))


def _photo(h: int = 45, w: int = 70, seed: int = 1) -> torch.Tensor:
    """A smooth uint8 (3, H, W) image (random noise blurred: something between flat and noise)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, h, w, generator=g) * 255
    return torch.nn.functional.avg_pool2d(noise, 5, 1, 2, count_include_pad=False)[0].round().to(torch.uint8)


def _outputs(run: LoadedRun, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return run.model(run.preprocess(image[None]))[0]  # (C + 1, H, W)


# --- the entropy model ------------------------------------------------------------------------------
def _logistic_density(channels: int, slope_raw: float) -> tuple[FactorizedDensity, float]:
    """A density whose cdf is exactly sigmoid(k v): every matrix entry softplus(raw) = s, biases and
    tanh factors 0, so the chain 1 -> 3 -> 3 -> 3 -> 1 multiplies v by k = s * 3s * 3s * 3s = 27 s^4."""
    density = FactorizedDensity(channels)
    with torch.no_grad():
        for m in density.matrices:
            m.fill_(slope_raw)
        for b in density.biases:
            b.zero_()
        for a in density.factors:
            a.zero_()
    s = math.log1p(math.exp(slope_raw))
    return density.requires_grad_(False), 27 * s**4


def _closed_form(v: float, k: float) -> float:
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    return sig(k * (v + 0.5)) - sig(k * (v - 0.5))


def test_likelihoods_match_a_logistic_density_in_closed_form_far_into_the_tails() -> None:
    density, k = _logistic_density(2, slope_raw=math.log(math.expm1((1 / 27) ** 0.25)))  # k = 1
    assert k == pytest.approx(1.0)
    values = [0.0, 1.0, -2.0, 3.4, 10.0, -17.0]
    found = density.likelihood(torch.tensor(values).expand(2, 1, -1).contiguous())[0, 0].double()
    expected = torch.tensor([_closed_form(v, k) for v in values], dtype=torch.float64)
    # at v = -17 the two sigmoids are 1 - 1e-7 apart from 1: the sign trick keeps 5 digits in float32
    assert torch.allclose(found, expected, rtol=1e-4, atol=0)
    far = density.likelihood(torch.tensor([40.0]).expand(2, 1, -1).contiguous())
    assert float(far[0, 0, 0]) == pytest.approx(LIKELIHOOD_BOUND)  # bounded: 29.9 bits, never infinite


def test_counted_bits_are_minus_log2_of_the_likelihoods_and_the_rate_map_sums_to_them() -> None:
    density, k = _logistic_density(3, slope_raw=0.0)  # k = 27 log(2)^4 = 6.23: a narrow density
    y = torch.tensor([[0.0, 1.0], [-1.0, 0.0]]).expand(1, 3, 2, 2).contiguous()  # (N, M, h, w)
    likelihoods = density(y)
    expected_bits = sum(-math.log2(_closed_form(v, k)) for v in (0.0, 1.0, -1.0, 0.0)) * 3
    rate = bits_map(likelihoods, (20, 30))  # a 2x2 latent for a 20x30 image: edge blocks are partial
    assert rate.shape == (1, 1, 20, 30)
    assert float(rate.sum()) == pytest.approx(expected_bits, rel=1e-5)
    # the edge block (rows 16-19, columns 16-29: 4 x 14 pixels) spreads its own bits over its own pixels
    corner = -3 * math.log2(_closed_form(0.0, k))
    assert float(rate[0, 0, 16:, 16:].sum()) == pytest.approx(corner, rel=1e-5)
    assert float(rate[0, 0, 19, 29]) == pytest.approx(corner / (4 * 14), rel=1e-5)


def test_coder_tables_hold_the_whole_density_plus_the_escape_mass() -> None:
    density, k = _logistic_density(1, slope_raw=0.0)
    (low, probs), = density.tables()
    inside = probs[:-1]
    assert inside.tolist() == pytest.approx([_closed_form(v, k) for v in range(low, low + len(inside))], rel=1e-4)
    assert low == -(len(inside) // 2) and float(probs.sum()) == pytest.approx(1.0, abs=1e-6)  # symmetric, complete (float32 tables)
    assert float(probs[-1]) < 1e-8  # the escape: the tails beyond, 1e-9 a side at most (+ the bound)


def test_the_model_counts_minus_log2_of_its_own_likelihoods_of_the_rounded_latent() -> None:
    run, image = _run(), _photo()
    outputs = _outputs(run, image)
    with torch.no_grad():
        y_hat = torch.round(run.model.encode(image[None].float() / 255))
        bits = -torch.log2(run.model.entropy(y_hat)).sum()
    assert float(outputs[-1].sum()) == pytest.approx(float(bits), rel=1e-5)
    assert float(outputs[-1].mean()) == pytest.approx(float(bits) / (45 * 70), rel=1e-5)  # the map's mean is bpp


def test_mixed_quantizer_trains_the_decoder_on_rounded_values_and_the_rate_on_noise() -> None:
    """quantizer="mixed": in training the decoder gets round(y) (straight-through gradient), the rate
    y + u; "noise" gives the decoder y + u too; evaluation rounds either way."""
    torch.manual_seed(0)
    x = _photo(32, 32)[None].float() / 255
    seen = {}
    for quantizer in ("noise", "mixed"):
        model = create_model("compress_small", width=16, latent=8, quantizer=quantizer).train()
        hook = model.decoder[0].register_forward_pre_hook(lambda _m, args, q=quantizer: seen.update({q: args[0]}))
        x_in = x.clone().requires_grad_(True)
        out = model(x_in)
        out[:, :3].sum().backward()
        hook.remove()
        assert x_in.grad is not None and float(x_in.grad.abs().sum()) > 0  # the gradient reaches the encoder
        with torch.no_grad():
            y = model.encode(x)
        if quantizer == "mixed":
            assert torch.equal(seen[quantizer].detach(), torch.round(y))
        else:
            assert not torch.equal(seen[quantizer].detach(), torch.round(seen[quantizer].detach()))
    with pytest.raises(CnnlabError, match="quantizer='ste' is not one of noise, mixed"):
        create_model("compress_small", quantizer="ste")


# --- real files -------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(45, 70), (16, 16), (33, 17), (100, 130)])
def test_decompress_of_compress_is_exactly_the_models_rounded_reconstruction(size: tuple[int, int]) -> None:
    run, image = _run(), _photo(*size)
    data = codec.encode(run, image)
    decoded = codec.decode(run, data)
    own = to_levels(_outputs(run, image)[:3]).to(torch.uint8)  # the eval forward: latent rounded
    assert decoded.dtype == torch.uint8 and decoded.shape == image.shape
    assert torch.equal(decoded, own)


def test_file_size_is_the_counted_bits_plus_the_header_and_the_coders_final_state() -> None:
    for spread, size in ((30.0, (45, 70)), (30.0, (100, 130)), (1.0, (32, 48))):
        run, image = _run(spread=spread), _photo(*size)
        counted = float(_outputs(run, image)[-1].sum())
        data = codec.encode(run, image)
        extra = len(data) * 8 - codec.HEADER.size * 8 - counted
        assert -1.0 <= extra <= CODER_OVERHEAD_BITS, (spread, size, extra)
        assert codec.file_bpp(data, image) == len(data) * 8 / (size[0] * size[1])  # header included
    assert codec.HEADER.size == 26


def test_latent_values_in_the_tails_go_through_the_escape_and_come_back() -> None:
    run, image = _run(spread=3000.0), _photo()
    y = codec.latent(run, image)
    lows = torch.tensor([low for low, _ in run.model.entropy.tables()])[:, None, None]
    highs = lows + torch.tensor([len(p) - 2 for _, p in run.model.entropy.tables()])[:, None, None]
    escaped = int(((y < lows) | (y > highs)).sum())
    assert escaped > 0  # the case is what it claims
    data = codec.encode(run, image)
    assert torch.equal(codec.decode(run, data), to_levels(_outputs(run, image)[:3]).to(torch.uint8))
    counted = float(_outputs(run, image)[-1].sum())
    extra = len(data) * 8 - codec.HEADER.size * 8 - counted
    # the coder gives every symbol at least 2^-24 (24 bits), where the model counts up to 29.9 bits
    rare = int((run.model.entropy(y[None].float()) < 2.0**-24).sum())
    assert -6 * rare <= extra <= CODER_OVERHEAD_BITS + ESCAPE_BITS * escaped, (extra, rare, escaped)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: d[:10], "is truncated: 10 bytes, shorter than the 26-byte header"),
    (lambda d: d[:-4], "is truncated or padded: the header announces"),
    (lambda d: d + b"\0\0\0\0", "is truncated or padded"),
    (lambda d: d[:40] + bytes([d[40] ^ 1]) + d[41:], "is damaged"),
    (lambda d: b"GIF89a" + d[6:], "is not a cnnlab compressed file"),
    (lambda d: d[:4] + b"\x09" + d[5:], "format version 9"),
    (lambda d: b"", "is truncated: 0 bytes"),
])
def test_broken_files_are_refused_with_a_clear_error(damage, message: str) -> None:
    run = _run()
    data = codec.encode(run, _photo())
    assert len(data) > 44
    with pytest.raises(CnnlabError, match=message):
        codec.decode(run, damage(data), "x.cnlc")


def test_a_file_from_another_run_is_refused_not_decoded() -> None:
    data = codec.encode(_run(seed=0), _photo())
    with pytest.raises(CnnlabError, match=r"x.cnlc was compressed with another model .*decompress it with the run"):
        codec.decode(_run(seed=1), data, "x.cnlc")
    other = _run(seed=0)
    with torch.no_grad():  # the same architecture and seed, one weight nudged: still another model
        other.model.decoder[0].bias[0] += 1e-3
    with pytest.raises(CnnlabError, match="another model"):
        codec.decode(other, data, "x.cnlc")


def test_a_run_of_another_task_is_refused() -> None:
    run = _run()
    run.config["task"] = "denoise"
    with pytest.raises(CnnlabError, match="'denoise' run; compress and decompress need"):
        codec.encode(run, _photo())


# --- the JPEG baseline ------------------------------------------------------------------------------
def test_jpeg_baseline_is_4_2_0_optimised_and_the_highest_quality_within_the_bits() -> None:
    from PIL import JpegImagePlugin

    image = _photo(64, 96, seed=3)
    quality, bpp, decoded = jpeg_at_bpp(image, 1.5)
    pixels = 64 * 96
    assert bpp <= 1.5 and len(jpeg_bytes(image, quality + 1)) * 8 / pixels > 1.5
    pil = Image.open(io.BytesIO(jpeg_bytes(image, quality)))
    assert JpegImagePlugin.get_sampling(pil) == 2  # 4:2:0
    plain = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(plain, format="JPEG", quality=quality, subsampling=2)
    assert len(jpeg_bytes(image, quality)) < len(plain.getvalue())  # optimised Huffman tables are smaller
    assert np.array_equal(decoded.permute(1, 2, 0).numpy(), np.asarray(pil.convert("RGB")))


def test_meter_scores_bpp_psnr_and_jpeg_beside_them_by_hand() -> None:
    task = get_task("compress", lmbda=0.01, patch=16)
    image = _photo(32, 48)[None]
    recon = image.float() / 255
    recon[0, 0, 0, 0] += 40 / 255  # one value off by 40 levels
    rate = torch.full((1, 1, 32, 48), 0.75)  # 0.75 bpp everywhere
    outputs = torch.cat([recon, rate], dim=1)
    meter = task.meter({})
    meter.update(outputs, image, task.loss(outputs, image), {"input": image, "target": image})
    m = meter.compute()
    mse = (min(255, int(image[0, 0, 0, 0]) + 40) - int(image[0, 0, 0, 0])) ** 2 / (3 * 32 * 48)
    assert m["bpp"] == pytest.approx(0.75) and m["psnr"] == pytest.approx(10 * math.log10(255**2 / mse))
    assert m["loss"] == pytest.approx(0.75 + 0.01 * 255**2 * float(((recon - image / 255) ** 2).mean()), rel=1e-5)
    quality, bpp, decoded = jpeg_at_bpp(image[0], 0.75)
    assert m["jpeg_bpp"] == pytest.approx(bpp) and m["jpeg_bpp"] <= 0.75 or quality == 1
    err = (decoded.double() - image[0].double()).square().mean()
    assert m["jpeg_psnr"] == pytest.approx(10 * math.log10(255**2 / float(err)))
    assert "jpeg_psnr" not in task.meter({}, training=True).compute()  # the cheap training subset


@pytest.mark.parametrize(("options", "message"), [
    ({"lmbda": -1}, "lmbda=-1 must be a number > 0"),
    ({"lmbda": "high"}, "lmbda='high' must be a number > 0"),
    ({"patch": 40}, "--patch 40 must be a multiple of 16"),
    ({"patch": 8}, "--patch 8 must be a multiple of 16"),
])
def test_bad_compress_options_name_the_fix(options: dict, message: str) -> None:
    with pytest.raises(CnnlabError, match=message):
        get_task("compress", **options)


# --- end to end -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_train_eval_compress_decompress_predict_end_to_end(tmp_path: Path) -> None:
    run = tmp_path / "run"
    fit(dataclasses.replace(CP, out=str(run)), progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < 0.75 * rows[0]["train_loss"], rows  # the loss falls (measured: 0.6x in 3 epochs)
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    assert {"val_bpp", "val_psnr", "val_jpeg_bpp", "val_jpeg_psnr"} <= set(rows[-1])

    result = CliRunner().invoke(cli, ["eval", str(run), "--data", CP.data, "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    found = found.get("metrics", found)
    assert found["bpp"] == pytest.approx(rows[-1]["val_bpp"], rel=1e-5)

    Image.fromarray(_photo(40, 52).permute(1, 2, 0).numpy()).save(tmp_path / "photo.png")
    runner = CliRunner()
    packed = runner.invoke(cli, ["compress", str(run), str(tmp_path / "photo.png"), "--out", str(tmp_path / "packed"),
                                 "--format", "json"])
    assert packed.exit_code == 0, packed.output
    (row,) = json.loads(packed.output)
    file = tmp_path / "packed" / "photo.cnlc"
    assert row["bytes"] == file.stat().st_size and row["bpp"] == pytest.approx(file.stat().st_size * 8 / (40 * 52))
    result = runner.invoke(cli, ["decompress", str(run), str(tmp_path / "packed"), "--out", str(tmp_path / "unpacked")])
    assert result.exit_code == 0, result.output  # a folder stands for its .cnlc files
    for names, message in (([tmp_path / "nothing.cnlc"], "does not exist"), ([tmp_path / "unpacked"], "holds no .cnlc")):
        failed = runner.invoke(cli, ["decompress", str(run), *map(str, names), "--out", str(tmp_path / "y")])
        assert failed.exit_code != 0 and message in str(failed.exception), failed.exception
    unpacked = np.asarray(Image.open(tmp_path / "unpacked" / "photo.png"))
    result = runner.invoke(cli, ["predict", str(run), str(tmp_path / "photo.png"), "--out", str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    assert np.array_equal(unpacked, np.asarray(Image.open(tmp_path / "pred" / "photo.png")))
    # the PSNR compress printed is the decoded file's
    err = np.square(unpacked.astype(float) - np.asarray(Image.open(tmp_path / "photo.png")).astype(float)).mean()
    assert row["psnr"] == pytest.approx(10 * math.log10(255**2 / err))

    other = tmp_path / "other"  # another run: the same files with one weight changed
    shutil.copytree(run, other)
    from safetensors.torch import load_file, save_file

    weights = load_file(other / "model.safetensors")
    weights["decoder.0.bias"] = weights["decoder.0.bias"] + 0.01
    save_file(weights, str(other / "model.safetensors"))
    from cnnlab.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["decompress", str(other), str(file), "--out", str(tmp_path / "x")])
    assert stop.value.code == 2 and not (tmp_path / "x").exists()
