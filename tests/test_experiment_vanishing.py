"""The vanishing-gradient experiment: the lecture's claim holds, and the CLI writes its plot."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from cnnlab.cli import cli
from cnnlab.experiments.vanishing_gradients import gradient_norms


def test_residual_relu_keeps_the_first_layer_gradient_plain_sigmoid_loses_it() -> None:
    results = {r.name: r.grad_norms for r in gradient_norms(30, seed=0)}
    assert set(results) == {"plain sigmoid", "plain relu", "residual sigmoid", "residual relu"}
    assert all(len(norms) == 30 for norms in results.values())
    plain_sig, res_relu = results["plain sigmoid"], results["residual relu"]
    assert res_relu[0] >= 100 * plain_sig[0]
    assert plain_sig[0] < 1e-6 * plain_sig[-1]  # shrinks by orders of magnitude towards the input
    assert results["residual sigmoid"][0] > 1e-3 * results["residual sigmoid"][-1]  # the shortcut carries it


def test_same_seed_same_numbers_and_both_inits_show_the_effect() -> None:
    assert gradient_norms(6, seed=3) == gradient_norms(6, seed=3)
    default = {r.name: r.grad_norms for r in gradient_norms(20, init="default")}
    assert default["residual relu"][0] >= 100 * default["plain sigmoid"][0]


def test_cli_prints_table_and_writes_png(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["experiment", "vanishing-gradients", "--depth", "8",
                                      "--out", str(tmp_path / "vg")])
    assert result.exit_code == 0, result.output
    assert "plain sigmoid" in result.output and "residual relu" in result.output
    png = tmp_path / "vg" / "vanishing_gradients.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in png.parent.iterdir()] == ["vanishing_gradients.png"]  # no temp file left


def test_cli_rejects_a_depth_too_small(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["experiment", "vanishing-gradients", "--depth", "1", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "--depth" in str(result.exception)
