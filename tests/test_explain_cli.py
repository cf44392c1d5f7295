"""`cnnlab explain RUN INPUT...` on a real (tiny) run directory: every method writes its PNGs, and
user errors are one line that names the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnlab.cli import cli, main
from test_report import PNG_MAGIC, train_tiny_run


@pytest.fixture(scope="module")
def run_and_images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from PIL import Image

    root = tmp_path_factory.mktemp("explain_cli")
    images = root / "images"
    images.mkdir()
    Image.new("RGB", (24, 24), (20, 200, 40)).save(images / "green.png")
    Image.new("RGB", (16, 16), (240, 240, 240)).save(images / "white.png")
    return train_tiny_run(root), images


def _ok(args: list[str]) -> str:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


@pytest.mark.slow
def test_every_method_writes_pngs(run_and_images: tuple[Path, Path], tmp_path: Path) -> None:
    run, images = run_and_images
    assert "stages.0.main.0.conv.depthwise" in _ok(["explain", str(run), "--list-layers"])
    for method in ("gradcam", "gradcam++", "hirescam"):
        out = tmp_path / method
        text = _ok(["explain", str(run), str(images), "--method", method, "--layer", "stages.0", "--out", str(out),
                    "--target", "circle"])
        assert "circle" in text
        pngs = sorted(p.name for p in out.glob("*.png"))
        slug = method.replace("+", "p")  # gradcam++ -> gradcampp: file names without "+"
        assert pngs == [f"green_{slug}_stages.0.png", f"white_{slug}_stages.0.png"]
    out = tmp_path / "maps"
    text = _ok(["explain", str(run), str(images / "green.png"), "--method", "activations", "--out", str(out)])
    assert "channels silent" in text and (out / "silent_by_depth.png").exists()
    out = tmp_path / "filters"
    _ok(["explain", str(run), "--method", "filters", "--layer", "stem.conv", "--channels", "4", "--steps", "2",
         "--out", str(out)])
    for png in tmp_path.rglob("*.png"):
        assert png.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layer", "stages.0.mian"], "did you mean: stages.0.main"),
        (["--layer", "head.fc"], "no spatial extent"),
        (["--target", "7"], "valid classes are 0..5"),
        (["--target", "dog"], "unknown target class 'dog'"),
        (["--method", "activations", "--layer", "head.fc"], "no maps to draw"),
        (["--method", "filters", "--channels", "0"], "--channels must be at least 1, got 0"),
    ],
)
def test_user_errors_are_one_line(run_and_images: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture,
                                  args: list[str], message: str) -> None:
    run, images = run_and_images
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", str(run), str(images), "--out", str(tmp_path), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_cam_needs_an_input(run_and_images: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    run, _ = run_and_images
    with pytest.raises(SystemExit):
        main(["explain", str(run), "--method", "gradcam"])
    assert "needs at least one INPUT" in capsys.readouterr().err


@pytest.mark.slow
def test_filters_show_a_progress_bar(run_and_images: tuple[Path, Path], tmp_path: Path) -> None:
    """Issue 17: a 64-channel atlas ran 20+ s without a word; every ascent step now moves a bar."""
    run, _ = run_and_images
    text = _ok(["explain", str(run), "--method", "filters", "--layer", "stem.conv", "--channels", "3", "--steps", "4",
                "--out", str(tmp_path)])
    assert "filter ascent" in text and "4/4" in text


@pytest.mark.slow
def test_an_all_zero_cam_is_said_in_the_output(run_and_images: tuple[Path, Path], tmp_path: Path) -> None:
    """Issue 17: with the head's weights zeroed no layer can raise a score, so every map is zero; the
    CLI says so for each image instead of writing flat overlays without a word."""
    import shutil

    from safetensors.torch import load_file, save_file

    run, images = run_and_images
    dead = tmp_path / "dead"
    shutil.copytree(run, dead)
    weights = load_file(dead / "model.safetensors")
    head = [name for name in weights if name.startswith("head.")]
    assert head
    save_file({k: v.zero_() if k in head else v for k, v in weights.items()}, dead / "model.safetensors")
    text = _ok(["explain", str(dead), str(images), "--layer", "stages.0", "--out", str(tmp_path / "cams")])
    assert text.count("is zero everywhere") == 2 and "try another --layer or --target" in text
    text = _ok(["explain", str(run), str(images), "--layer", "stages.0", "--out", str(tmp_path / "live")])
    assert "zero everywhere" not in text
