"""The README's Quickstart is what CI runs (exactly two commands, the second one verbatim in .ci/run), and
the whole README runs top to bottom as written (issue 17)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO


def _quickstart_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_quickstart_has_exactly_two_commands() -> None:
    commands = _quickstart_commands()
    assert len(commands) == 2, commands
    assert commands[0].endswith("cnnlab demo")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert _quickstart_commands()[1] in ci_lines


# ------------------------------------------------------------------------------------ the README walk
# Issue 17: a new user runs every README command and snippet in order. The test does the same in a
# temporary folder, with small stand-ins for the files the README assumes the user has (photos/,
# ../shared/data/..., the CIFAR-10 download) and tiny settings added to the commands that train.
# What it leaves out, and why:
SKIPPED = {
    "python -m pip": "installs from the network",
    "python -m venv": "installs from the network",
    "ruff": "the test suite's own lint step",
    "python -m pytest": "the test suite itself",
    "python benchmarks/": "benchmarks run for minutes; their figures are in benchmarks/RESULTS.md",
    "torchrun --nnodes": "needs two machines",
    "torchrun --standalone": "test_cli_train.test_torchrun_two_processes_on_cpu runs it on tiny settings",
}
TINY_TRAIN = {"--epochs": "1", "--limit": "48", "--batch-size": "8", "--precision": "fp32", "--threads": "1"}
TINY_PATCH = {"segment": "32", "superres": "24", "compress": "32"}


def readme_steps() -> list[tuple[str, str]]:
    """('bash', one command) and ('python', one block) in README order; commands joined over ``\\``
    and split at ``&&``, comments dropped."""
    import shlex

    steps = []
    text = (REPO / "README.md").read_text()
    for lang, body in re.findall(r"```(bash|python)\n(.*?)```", text, flags=re.S):
        if lang == "python":
            steps.append(("python", body))
            continue
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                steps.append(("bash", shlex.join(words[:cut])))
                words = words[cut + 1:]
    return steps


def _set(words: list[str], option: str, value: str) -> list[str]:
    if option in words:
        i = words.index(option)
        return [*words[:i + 1], value, *words[i + 2:]]
    return [*words, option, value]


def tiny(words: list[str]) -> list[str]:
    """A cnnlab command on tiny settings: what it runs stays as written, only sizes shrink."""
    command = words[0]
    if command == "train" and "--resume" in words:
        return _set(words, "--epochs", "2")  # one more epoch than the run has (every other option comes from it)
    if command == "train":
        for option, value in TINY_TRAIN.items():
            words = _set(words, option, value)
        if "--image-size" in words:
            words = _set(words, "--image-size", "32")
        if words[1] in TINY_PATCH:
            words = _set(words, "--patch", TINY_PATCH[words[1]])
        return [*words, "--quiet"]
    if command == "demo":
        images = {"segment": "40", "superres": "40"}.get(words[words.index("--task") + 1] if "--task" in words
                                                            else "classify", "120")  # 2 per class held out
        return [*words, "--epochs", "1", "--images", images, "--precision", "fp32"]
    if command == "explain" and "filters" in words:
        return _set(words, "--steps", "2")
    if command == "report":
        return _set(words, "--samples", "2")
    return words


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _stand_ins(root: Path) -> Path:
    """Tiny versions of what the README assumes the user has; returns the folder to run it in
    (``root/work``, with ``../shared/data`` beside it and the CIFAR-10 download in ``root/cache``)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    work, data = root / "work", root / "shared" / "data"

    def save(path: Path, h: int, w: int, channels: int = 3, values: int = 256) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, values, (h, w, channels) if channels > 1 else (h, w), dtype=np.uint8)
        Image.fromarray(pixels).save(path)

    for c in ("cats", "dogs"):
        for i in range(10):
            save(work / "photos" / c / f"{i}.png", 40, 40)
    for name in ("photo.png", "some/folder/a.png", "some/folder/b.jpg", "street.jpg", "small.png"):
        save(work / name, *((48, 64) if name == "street.jpg" else (24, 24)))
    (data / "cifar10").mkdir(parents=True)
    np.savez(data / "cifar10" / "cifar10_train.npz", x=rng.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8),
             y=np.arange(60) % 10, class_names=np.array(CIFAR_NAMES))
    for i in range(8):
        save(data / "camvid" / "images" / f"f{i}.jpg", 48, 64)
        save(data / "camvid" / "labels" / f"f{i}.png", 48, 64, channels=1, values=12)  # 11: void
        save(data / "membrane" / "image" / f"{i:02d}.png", 48, 48, channels=1)
        (data / "membrane" / "label").mkdir(exist_ok=True)
        mask = (rng.random((48, 48)) > 0.5).astype(np.uint8) * 255  # 0/255 files: --mask-values 0,255
        Image.fromarray(mask).save(data / "membrane" / "label" / f"{i:02d}.png")
        save(data / "sr_train" / "BSDS200" / f"{i}.jpg", 60, 60)
        for c in ("cats", "dogs"):  # JPEG files: --input dct reads their coefficients
            save(data / "cats_vs_dogs" / "train" / c / f"{c}.{i}.jpg", 40, 56)
    import soundfile as sf

    (data / "fsdd" / "recordings").mkdir(parents=True)
    for digit in range(4):  # FSDD's flat layout: {label}_{speaker}_{index}.flac
        for speaker in ("george", "jackson"):
            for i in range(4):
                tone = np.sin(np.arange(4000) * (0.05 + 0.02 * digit)) * rng.uniform(0.2, 0.5)
                sf.write(data / "fsdd" / "recordings" / f"{digit}_{speaker}_{i}.flac", tone.astype(np.float32), 8000)
    batches = root / "cache" / "cifar10" / "cifar-10-batches-bin"  # as extracted from the verified archive
    batches.mkdir(parents=True)
    for name, count in [*((f"data_batch_{i}.bin", 10) for i in range(1, 6)), ("test_batch.bin", 20)]:
        records = rng.integers(0, 256, (count, 1 + 3 * 32 * 32), dtype=np.uint8)
        records[:, 0] = np.arange(count) % 10
        records.tofile(batches / name)
    (batches / "batches.meta.txt").write_text("\n".join(CIFAR_NAMES) + "\n")
    return work


@pytest.mark.slow
def test_the_readme_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command and snippet, in order, as written (plus tiny settings); each must succeed."""
    import shlex

    from click.testing import CliRunner

    from cnnlab.cli import cli

    monkeypatch.chdir(_stand_ins(tmp_path))
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    ran = 0
    for lang, step in readme_steps():
        if lang == "python":
            exec(compile(step, "README.md", "exec"), {"__name__": "readme"})  # noqa: S102 - our own README
            ran += 1
            continue
        if any(step.startswith(prefix) for prefix in SKIPPED):
            continue
        words = shlex.split(step)
        assert words[0] == "cnnlab", f"the walk does not know how to run {step!r}: run it or add it to SKIPPED"
        result = CliRunner().invoke(cli, tiny(words[1:]))
        assert result.exit_code == 0, f"{step}\n{result.output[-3000:]}\n{result.exception!r}"
        ran += 1
    assert ran >= 40  # the README's commands and snippets; fewer means the parser lost some
