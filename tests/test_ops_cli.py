"""`cnnlab ops` end to end: printed matrices, worked sums, shapes, GIFs, the tour and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cnnlab.cli import cli, main

LECTURE = ["-i", "9 4 1; 1 1 1; 1 2 1"]


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, ["ops", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def fails(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run through the real entry point: a user error is one line on stderr and exit code 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(["ops", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_conv2d_prints_the_output_and_a_worked_cell() -> None:
    out = run("conv2d", *LECTURE, "-k", "1 0; 0 1", "--explain", "0,1")
    assert "output (2x2):\n10   5\n 3   2\n" in out
    assert "out[0, 1] = 4×1 + 1×0 + 1×0 + 1×1 = 5" in out


def test_conv2d_with_stride_padding_and_commas() -> None:
    out = run("conv2d", "-i", "9,4,1; 1,1,1; 1,2,1", "-k", "1 0; 0 1", "--stride", "2", "--padding", "1")
    assert "output (2x2):\n9  1\n1  2\n" in out


def test_conv1d_and_pooling() -> None:
    out = run("conv1d", "-i", "1 2 3 4 5", "-k", "1 0 -1", "--padding", "1", "--explain", "1")
    assert "output (5):\n-2  -2  -2  -2   4" in out
    assert "out[1] = 1×1 + 2×0 + 3×(-1) = -2" in out
    out = run("pool2d", *LECTURE, "--size", "2", "--stride", "1", "--mode", "avg", "--explain", "1,1")
    assert "output (2x2):\n3.75  1.75\n1.25  1.25" in out
    assert "out[1, 1] = (1 + 1 + 2 + 1) / 4 = 1.25" in out
    assert "output (2):\n5  8" in run("pool1d", "-i", "1 5 2 8 3", "--size", "2")


def test_transpose_explains_the_zero_insertion() -> None:
    out = run("transpose", "-i", "1 2; 3 4", "-k", "1 0; 0 2", "--stride", "2", "--explain", "1,1")
    assert "output (4x4):\n1  0  2  0\n0  2  0  4\n3  0  4  0\n0  6  0  8" in out
    assert "zero-inserted input (z = s-1 = 1 zeros between cells):\n1  0  2\n0  0  0\n3  0  4" in out
    assert "out[1, 1] = 1×2 + 0×0 + 0×0 + 0×1 = 2" in out
    zeros = run("transpose", "-i", "1 2; 3 4", "-k", "1 0; 0 2", "--stride", "2", "--method", "zeros")
    assert zeros.split("\n")[:5] == out.split("\n")[:5]


def test_matrices_from_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    x, w = rng.integers(0, 5, size=(2, 4, 4)).astype(float), rng.integers(-1, 2, size=(2, 1, 2, 2)).astype(float)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    (tmp_path / "k.txt").write_text("1 0\n0 1\n")
    out = run("conv2d", "-i", str(tmp_path / "x.npy"), "-k", str(tmp_path / "w.npy"), "--groups", "2")
    from cnnlab import ops
    from cnnlab.ops.explain import format_matrix

    assert format_matrix(ops.conv2d(x, w, groups=2)) in out
    assert "output (2x2):\n10   5" in run("conv2d", *LECTURE, "-k", str(tmp_path / "k.txt"))


def test_shape_commands() -> None:
    out = run("shape", "conv", "--in", "32", "--kernel", "3", "--stride", "2", "--padding", "1")
    assert "floor((32 + 1 + 1 - (3-1) - 1) / 2) + 1 = 16" in out
    out = run("shape", "conv", "--in", "6", "--kernel", "3", "--stride", "2", "--padding", "same")
    assert "Keras/TensorFlow" in out and "left 0, right 1" in out and "= 3" in out
    out = run("shape", "transpose", "--in", "16", "--kernel", "3", "--stride", "2", "--padding", "1", "--target", "32")
    assert "output_padding = 32 - ((n-1)*s - 2p + d*(k-1) + 1) = 1" in out
    assert "z = s-1 = 1" in out and "p' = k-p-1 = 3-1-1 = 1" in out and "s' = 1" in out
    assert "(16-1)*2 - 2*1 + (3-1) + 1 + 1 = 32" in out


def test_receptive_field_table() -> None:
    out = run("receptive-field", "--layers", "conv3,conv3s2,pool2", "--in", "32")
    rows = [line.replace("│", " ").split() for line in out.splitlines() if line.startswith("│")]
    assert rows == [["conv3", "3", "1", "1", "1", "3", "30"], ["conv3s2", "3", "2", "1", "2", "5", "14"],
                    ["pool2", "2", "2", "1", "4", "7", "7"]]


@pytest.mark.parametrize(("args", "frames"), [
    (["conv", *LECTURE, "-k", "1 0; 0 1", "--padding", "1"], 16),  # 4x4 output
    (["pool", *LECTURE, "--size", "2", "--stride", "1", "--mode", "avg"], 4),
    (["transpose", "-i", "1 2; 3 4", "-k", "1 0; 0 2", "--stride", "2", "--padding", "1", "--output-padding", "1"], 9),
])
def test_animate_writes_a_multi_frame_gif(tmp_path, args: list[str], frames: int) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "anim.gif"
    out = run("animate", *args, "-o", str(path))
    assert f"({frames} frames" in out
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == frames
        first = np.asarray(im.convert("RGB"))
        im.seek(frames - 1)
        last = np.asarray(im.convert("RGB"))
    assert first.shape == last.shape and (first != last).any()  # the window moved
    assert [p.name for p in tmp_path.iterdir()] == ["anim.gif"]  # no temporary file left behind


def test_tour() -> None:
    out = run("tour")
    for piece in ("Convolution", "out[0, 1] = 4×1 + 1×0 + 1×2 + 1×1 = 7", "Max pooling", "zero insertion",
                  "scatter and zeros agree: True", "p' = k-p-1", "receptive field"):
        assert piece in out


@pytest.mark.parametrize(("args", "message"), [
    (["conv2d", "-i", "9 4 1; 1 1; 1 2 1", "-k", "1"], "row 2 of --input has 2 numbers but row 1 has 3"),
    (["conv2d", "-i", "9 4 x", "-k", "1"], "cannot read 'x' in row 1 of --input as a number"),
    (["conv2d", "-i", "1 2; ; 3 4", "-k", "1"], "row 2 of --input is empty"),
    (["conv2d", *LECTURE, "-k", "missing.npy"], "--kernel file 'missing.npy' not found"),
    (["conv2d", *LECTURE, "-k", "1 1 1 1; 1 1 1 1"], "kernel spans 4 cells but the padded input width is only 3"),
    (["conv2d", *LECTURE, "-k", "1", "--stride", "0"], "stride must be a positive integer, got 0"),
    (["conv2d", *LECTURE, "-k", "1", "--stride", "two"], "cannot read --stride 'two'"),
    (["conv2d", *LECTURE, "-k", "1", "--explain", "x"], "cannot read --explain 'x'; give an integer or two"),
    (["conv2d", *LECTURE, "-k", "1", "--padding", "-1"], "padding must be >= 0, got -1"),
    (["conv2d", *LECTURE, "-k", "1 0; 0 1", "--explain", "5,0"], r"cell (5, 0) is outside the 2x2 output"),
    (["transpose", *LECTURE, "-k", "1 1; 1 1", "--stride", "2", "--output-padding", "2"],
     "output_padding=2 must be smaller than the stride (2) or the dilation (1)"),
    (["shape", "transpose", "--in", "16", "--kernel", "3", "--stride", "2", "--padding", "1", "--target", "34"],
     "impossible, because it needs output_padding=3"),
    (["receptive-field", "--layers", "conv3,maxpool2"], "cannot read layer 'maxpool2'"),
    (["animate", "conv", *LECTURE, "-o", "never.gif"], "animate conv needs --kernel"),
])
def test_bad_input_is_one_line_and_exit_code_2(capsys, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    assert message in fails(capsys, *args)


def test_channel_and_group_errors_from_files(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    np.save(tmp_path / "x.npy", np.ones((3, 4, 4)))
    np.save(tmp_path / "w.npy", np.ones((2, 2, 3, 3)))
    np.save(tmp_path / "w1.npy", np.ones((2, 1, 3, 3)))
    x = str(tmp_path / "x.npy")
    assert "input has 3 channels but the weights expect 2" in fails(capsys, "conv2d", "-i", x, "-k", str(tmp_path / "w.npy"))
    assert "groups=2 does not divide the 3 input channels" in fails(
        capsys, "conv2d", "-i", x, "-k", str(tmp_path / "w1.npy"), "--groups", "2")


def test_transpose_animation_marks_inserted_zeros_and_padding() -> None:
    from cnnlab.render.animate import INSERTED, PAD, REAL, transpose_scene

    scene = transpose_scene([[1, 2], [3, 4]], [[1, 0], [0, 2]], stride=2, padding=1, output_padding=1)
    # p' = k-p-1 = 0: no padding before; output_padding adds the last row and column
    R, I, P = REAL, INSERTED, PAD
    np.testing.assert_array_equal(scene.kinds, [[R, I, R, P], [I, I, I, P], [R, I, R, P], [P, P, P, P]])
    np.testing.assert_array_equal(scene.grid, [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]])


def test_readme_ops_section_runs_and_shows_real_output(tmp_path, monkeypatch) -> None:
    """Every command in the README's "Exact ops" section runs, and its printed output block is real."""
    import re
    import shlex

    from conftest import REPO

    section = (REPO / "README.md").read_text().split("## Exact ops", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(bash|python)?\n(.*?)```", section, flags=re.S)
    runner = CliRunner()
    ran = 0
    monkeypatch.chdir(tmp_path)  # commands that write files (animate) write here
    for n, (lang, body) in enumerate(blocks):
        if lang != "bash":
            continue
        for line in body.strip().splitlines():
            args = shlex.split(line.split("  #")[0])
            assert args[0] == "cnnlab", line
            result = runner.invoke(cli, args[1:])
            assert result.exit_code == 0, (line, result.output)
            ran += 1
        if n + 1 < len(blocks) and blocks[n + 1][0] == "":
            shown = [ln for ln in blocks[n + 1][1].splitlines() if ln.strip() and ln != "..."]
            assert all(ln in result.output.splitlines() for ln in shown), (line, result.output)
    assert ran >= 5


def test_explain_a_chosen_channel_of_npy_inputs(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    x = np.arange(48.0).reshape(3, 4, 4)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", np.stack([np.ones((3, 2, 2)), -np.ones((3, 2, 2))]))
    out = run("conv2d", "-i", str(tmp_path / "x.npy"), "-k", str(tmp_path / "w.npy"), "--explain", "0,0",
              "--channel", "1")
    # channel 1 has weights -1: minus the 2x2 corner of each of the 3 input channels
    assert "out[1, 0, 0] = 0×(-1) + 1×(-1) + 4×(-1) + 5×(-1) + 16×(-1)" in out and out.endswith("= -222\n")
    assert "out[2, 1, 1] = max(42, 43, 46, 47) = 47" in run("pool2d", "-i", str(tmp_path / "x.npy"), "-e", "1,1",
                                                           "-c", "2")
    err = fails(capsys, "conv2d", "-i", str(tmp_path / "x.npy"), "-k", str(tmp_path / "w.npy"), "-e", "0,0", "-c", "2")
    assert "output channel 2 does not exist: there are 2" in err
