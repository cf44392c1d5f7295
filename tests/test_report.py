"""`cnnlab report`: one self-contained HTML page whose every image resolves (and, where Chromium is
installed, renders)."""

from __future__ import annotations

import base64
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnlab.cli import cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def train_tiny_run(root: Path) -> Path:
    """A one-epoch mini_xception run on 96 16x16 shapes, through the public `cnnlab train` command."""
    out = root / "run"
    args = ["train", "classify", "--data", "builtin:shapes?n=96&size=16", "--model", "mini_xception",
            "--out", str(out), "--epochs", "1", "--batch-size", "32", "--precision", "fp32"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("report"))


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.headings: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a.get("src") or "")
        if tag in ("a", "link") and a.get("href"):
            self.hrefs.append(a["href"] or "")
        self._in_h2 = tag == "h2"

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.headings.append(data.strip())
            self._in_h2 = False


def _assert_resolves(ref: str, base: Path) -> None:
    if ref.startswith("data:"):
        header, payload = ref.split(",", 1)
        assert header == "data:image/png;base64", header
        assert base64.b64decode(payload, validate=True).startswith(PNG_MAGIC)
    elif not ref.startswith(("http://", "https://", "#")):
        assert (base / ref).exists(), ref


@pytest.mark.slow
def test_report_is_one_self_contained_page(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "report.html"
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--out", str(out), "--samples", "3"])
    assert result.exit_code == 0, result.output
    parser = _Refs()
    parser.feed(out.read_text(encoding="utf-8"))
    for heading in ("Summary", "Learning curves", "Confusion matrix (validation)", "Sample predictions",
                    "Feature maps", "Filter atlas"):
        assert heading in parser.headings
    # curves + confusion + 3 samples + feature grid + silent-by-depth + atlas
    assert len(parser.srcs) == 8
    for ref in parser.srcs + parser.hrefs:
        _assert_resolves(ref, out.parent)
    assert not list(out.parent.glob(".*"))  # no temporary files left behind


@pytest.mark.slow
def test_report_with_images_from_files_and_missing_run_error(run_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (20, 20), (200, 30, 30)).save(tmp_path / "red.png")
    from cnnlab.app.report import write_report

    out = write_report(run_dir, tmp_path / "r.html", inputs=[str(tmp_path / "red.png")], samples=2,
                       filter_channels=4, filter_steps=2)
    text = out.read_text(encoding="utf-8")
    assert "the images passed with --inputs" in text and ">red<" in text
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "nope")])
    assert result.exit_code != 0 and "not a run directory" in str(result.exception)
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--samples", "0"])  # was an IndexError in amax()
    assert result.exit_code != 0 and "show at least 1 sample image" in str(result.exception)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_renders_in_chromium(run_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    from cnnlab.app.report import write_report

    page = write_report(run_dir, tmp_path / "report.html", samples=2, filter_channels=4, filter_steps=2)
    chromium = [shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    # The browser itself counts the images it decoded: a probe copy of the page writes the count into the DOM.
    probe = tmp_path / "probe.html"
    script = ("<script>addEventListener('load', () => { const all = [...document.images]; document.body.dataset.loaded ="
              " all.filter(i => i.complete && i.naturalWidth > 0).length + '/' + all.length; });</script>")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8")
    dom = subprocess.run([*chromium, "--dump-dom", probe.as_uri()], check=True, capture_output=True, text=True, timeout=120)
    assert 'data-loaded="7/7"' in dom.stdout, dom.stdout[-300:]  # curves, confusion, 2 samples, maps, depth, atlas
    shot = tmp_path / "shot.png"
    subprocess.run([*chromium, f"--screenshot={shot}", "--window-size=1100,2400", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    # A blank page has one or two grey levels; a rendered report has text and pictures.
    histogram = Image.open(shot).convert("L").histogram()
    assert sum(1 for count in histogram if count) > 20
