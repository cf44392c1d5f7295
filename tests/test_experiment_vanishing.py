"""The vanishing/exploding-gradient experiment: its numbers for a fixed seed sit in the orders of
magnitude the README quotes, its verdicts name vanishing and explosion, and the CLI writes its
plot and JSON record."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnlab.cli import cli
from cnnlab.experiments.vanishing_gradients import VARIANTS, Measurement, Variant, gradient_norms

# depth 30, seed 0, He init, at initialisation: (first-layer norm, last-layer norm, verdict), as in the README
README = {
    "plain sigmoid": (5.5e-17, 0.17, "vanishes"),
    "plain relu": (1.2e-2, 4.0e-3, "healthy"),
    "residual sigmoid": (7.1e-2, 3.6, "healthy"),
    "residual relu": (1.6e5, 2.7e6, "explodes"),
    "residual relu + bn": (0.66, 0.21, "healthy"),
    "residual relu, 1/sqrt(depth)": (0.27, 3.8, "healthy"),
    "residual relu, zero-init": (0.0, 0.0, "zero"),
}


def _close_in_magnitude(value: float, expected: float) -> bool:
    """Within a factor of 3 (half a decade) of ``expected``; zero only where zero is expected."""
    if expected == 0:
        return value == 0
    return value > 0 and abs(math.log10(value) - math.log10(expected)) < 0.5


@pytest.fixture(scope="module")
def at_init() -> dict[str, Measurement]:
    first, trained = gradient_norms(30, seed=0)
    assert trained == []  # no --steps, no second measurement
    return {m.name: m for m in first}


def test_seed_0_depth_30_numbers_sit_in_the_readme_orders_of_magnitude(at_init: dict[str, Measurement]) -> None:
    assert list(at_init) == [v.name for v in VARIANTS] == list(README)
    for name, (first, last, verdict) in README.items():
        m = at_init[name]
        assert len(m.grad_norms) == len(m.weight_norms) == 30
        assert _close_in_magnitude(m.grad_norms[0], first), (name, m.grad_norms[0])
        assert _close_in_magnitude(m.grad_norms[-1], last), (name, m.grad_norms[-1])
        assert m.verdict == verdict, (name, m.verdict)


def test_residual_relu_explodes_far_above_its_weights_and_the_fixes_stay_usable(at_init) -> None:
    # The shortcut alone carries the gradient but multiplies it: ~1e5 times the weights' own norm.
    assert at_init["residual relu"].relative > 1e4
    assert at_init["residual relu"].grad_norms[-1] > 1e7 * at_init["plain relu"].grad_norms[-1]
    for fix in ("residual relu + bn", "residual relu, 1/sqrt(depth)"):
        assert 1e-3 < at_init[fix].ratio < 1e3 and at_init[fix].relative < 10, fix
    assert at_init["plain sigmoid"].ratio < 1e-14  # shrinks by ~1/4 per layer over 30 layers


@pytest.mark.slow  # 5 SGD steps of three 30-layer stacks
def test_training_steps_show_the_explosion_diverge_and_the_zero_init_branch_wake_up() -> None:
    chosen = tuple(v for v in VARIANTS if v.name in ("plain sigmoid", "residual relu", "residual relu, zero-init"))
    first, trained = gradient_norms(30, seed=0, steps=5, variants=chosen)
    after = {m.name: m for m in trained}
    assert [m.step for m in first] == [0, 0, 0] and [m.step for m in trained] == [5, 5, 5]
    assert after["residual relu"].verdict == "diverged" and after["residual relu"].diverged_at <= 5
    woke = after["residual relu, zero-init"]
    assert woke.verdict == "healthy" and min(woke.grad_norms) > 0  # no longer exactly zero
    assert after["plain sigmoid"].verdict == "vanishes"


def test_same_seed_same_numbers_and_both_inits_show_the_effect() -> None:
    assert gradient_norms(6, seed=3) == gradient_norms(6, seed=3)
    default = {m.name: m.grad_norms for m in gradient_norms(20, init="default")[0]}
    assert default["residual relu"][0] >= 100 * default["plain sigmoid"][0]


@pytest.mark.parametrize(("grads", "weights", "verdict"), [
    ((1e-9, 1.0), (5.0, 5.0), "vanishes"),  # first / last = 1e-9
    ((1.0, 1.0), (0.05, 5.0), "explodes"),  # a gradient 20x its weights
    ((1e4, 1.0), (1e6, 1e6), "explodes"),  # grows 1e4x towards the input
    ((0.0, 0.0), (5.0, 5.0), "zero"),
    ((math.nan, 1.0), (5.0, 5.0), "diverged"),
    ((0.5, 0.2), (5.0, 5.0), "healthy"),
])
def test_verdict_rules(grads: tuple[float, float], weights: tuple[float, float], verdict: str) -> None:
    assert Measurement(Variant("v", True, "relu"), grads, weights, loss=1.0).verdict == verdict


@pytest.mark.slow  # trains every variant 2 steps
def test_cli_prints_the_table_and_writes_png_and_strict_json(tmp_path: Path) -> None:
    out = tmp_path / "vg"
    result = CliRunner().invoke(cli, ["experiment", "vanishing-gradients", "--depth", "8", "--steps", "2",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "plain sigmoid" in result.output and "verdict" in result.output and "after 2 steps" in result.output
    png, record = out / "vanishing_gradients.png", out / "vanishing_gradients.json"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(record.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data["experiment"] == "vanishing-gradients" and data["settings"]["depth"] == 8
    assert len(data["at_init"]) == len(data["after_training"]) == len(VARIANTS)
    assert len(data["at_init"][0]["grad_norms"]) == 8 and data["plots"] == [png.name]
    assert sorted(p.name for p in out.iterdir()) == [record.name, png.name]  # no temporary file left
    result = CliRunner().invoke(cli, ["report", str(out)])  # the output folder is a report source
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    assert "vanishing-gradients" in page and "explodes" in page and page.count("data:image/png;base64,") == 1


@pytest.mark.parametrize(("args", "named"), [(["--depth", "1"], "--depth"), (["--steps", "-1"], "--steps"),
                                             (["--lr", "0"], "--lr")])
def test_cli_rejects_bad_settings_naming_the_option(tmp_path: Path, args: list[str], named: str) -> None:
    result = CliRunner().invoke(cli, ["experiment", "vanishing-gradients", *args, "--out", str(tmp_path)])
    assert result.exit_code != 0 and named in str(result.exception)
