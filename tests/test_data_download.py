"""The downloader and CIFAR-10 loader against a local HTTP server: hashes, atomic files, safe extraction."""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data import cifar10, load_data
from cnnlab.data.download import download, safe_extract
from cnnlab.errors import CnnlabError

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture()
def server(tmp_path):
    """(folder served, base URL) on 127.0.0.1 at a free port, shut down after the test."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Quiet(*a, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _record(label: int, value: int) -> bytes:
    """One CIFAR binary record: label byte, then red = value, green = value + 1, blue = value + 2 planes."""
    return bytes([label]) + bytes([value]) * 1024 + bytes([value + 1]) * 1024 + bytes([value + 2]) * 1024


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _cifar_archive(path: Path, extra=None) -> str:
    """A miniature cifar-10-binary.tar.gz: 5 train batches of 4 records, a test batch of 3."""
    with tarfile.open(path, "w:gz") as tar:
        for b in range(1, 6):
            _add(tar, f"cifar-10-batches-bin/data_batch_{b}.bin",
                 b"".join(_record((b + i) % 10, 10 * b + i) for i in range(4)))
        _add(tar, "cifar-10-batches-bin/test_batch.bin", b"".join(_record(i, 200 + i) for i in range(3)))
        _add(tar, "cifar-10-batches-bin/batches.meta.txt", ("\n".join(NAMES) + "\n\n").encode())
        if extra:
            extra(tar)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cifar10_downloads_once_verifies_and_loads(server, tmp_path, monkeypatch) -> None:
    root, url = server
    sha = _cifar_archive(root / "cifar.tar.gz")
    monkeypatch.setattr(cifar10, "URL", f"{url}/cifar.tar.gz")
    monkeypatch.setattr(cifar10, "SHA256", sha)
    cache = tmp_path / "cache"
    bundle = load_data("cifar10", cache_dir=cache, val_split=0.25)
    assert bundle.class_names == NAMES and bundle.image_size == (32, 32) and bundle.in_channels == 3
    assert len(bundle.train) + len(bundle.val) == 20
    x = torch.cat([bundle.train.x, bundle.val.x])
    assert sorted(x[:, 0, 0, 0].tolist()) == sorted(10 * b + i for b in range(1, 6) for i in range(4))
    assert torch.equal(x[:, 2], x[:, 0] + 2)  # planes are R, G, B in that order
    assert (cache / "cifar10" / "cifar-10-binary.tar.gz").is_file()
    assert sorted(p.name for p in (cache / "cifar10").iterdir()) == ["cifar-10-batches-bin", "cifar-10-binary.tar.gz"]
    (root / "cifar.tar.gz").unlink()  # a second load needs no server
    test = load_data("cifar10:test", cache_dir=cache)
    assert len(test.train) == 0 and test.val.y.tolist() == [0, 1, 2]
    assert test.val.x[:, 1, 5, 5].tolist() == [201, 202, 203]


def test_cifar10_archive_with_a_traversal_member_is_refused(server, tmp_path, monkeypatch) -> None:
    root, url = server
    sha = _cifar_archive(root / "evil.tar.gz", extra=lambda tar: _add(tar, "../../escaped.txt", b"x"))
    monkeypatch.setattr(cifar10, "URL", f"{url}/evil.tar.gz")
    monkeypatch.setattr(cifar10, "SHA256", sha)  # the hash is right: only the member check can stop it
    with pytest.raises(CnnlabError, match="unsafe member path '../../escaped.txt'"):
        load_data("cifar10", cache_dir=tmp_path / "cache")
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (tmp_path / "cache" / "cifar10" / "cifar-10-batches-bin").exists()


def test_concurrent_loads_share_one_verified_copy(server, tmp_path, monkeypatch) -> None:
    root, url = server
    monkeypatch.setattr(cifar10, "URL", f"{url}/cifar.tar.gz")
    monkeypatch.setattr(cifar10, "SHA256", _cifar_archive(root / "cifar.tar.gz"))
    cache = tmp_path / "cache"
    with ThreadPoolExecutor(3) as pool:  # like three ranks of a distributed run starting together
        results = list(pool.map(lambda _: cifar10.load_cifar10(cache)[0], range(3)))
    assert all(torch.equal(r, results[0]) for r in results) and len(results[0]) == 20
    assert sorted(p.name for p in (cache / "cifar10").iterdir()) == ["cifar-10-batches-bin", "cifar-10-binary.tar.gz"]


def test_wrong_hash_names_file_and_both_hashes(server, tmp_path) -> None:
    root, url = server
    sha = _cifar_archive(root / "a.tar.gz")
    dest = tmp_path / "dl" / "a.tar.gz"
    with pytest.raises(CnnlabError) as info:
        download(f"{url}/a.tar.gz", "0" * 64, dest, progress=False)
    message = str(info.value)
    assert "0" * 64 in message and sha in message and "delete" in message
    assert re.search(r"a\.tar\.gz\.\w+\.part", message)  # the unverified file is named...
    assert not dest.exists()  # ...and never renamed into place
    assert download(f"{url}/a.tar.gz", sha, dest, progress=False) == dest and dest.is_file()
    dest.write_bytes(b"changed")  # a cached file is re-verified
    with pytest.raises(CnnlabError, match="SHA-256 mismatch"):
        download(f"{url}/a.tar.gz", sha, dest, progress=False)


def test_unreachable_server_and_missing_file(server, tmp_path) -> None:
    _, url = server
    with pytest.raises(CnnlabError, match="cannot download"):
        download(f"{url}/missing.tar.gz", "0" * 64, tmp_path / "m.tar.gz", progress=False)
    assert list(tmp_path.iterdir()) == [tmp_path / "www"]  # no partial file left behind
    with pytest.raises(CnnlabError, match="only http"):
        download("file:///etc/passwd", "0" * 64, tmp_path / "p", progress=False)


@pytest.mark.parametrize(
    "evil",
    [
        lambda tar: _add(tar, "../evil.txt", b"x"),
        lambda tar: _add(tar, "cifar-10-batches-bin/../../evil.txt", b"x"),
        lambda tar: _add(tar, "/tmp/evil.txt", b"x"),
        lambda tar: tar.addfile(_symlink("cifar-10-batches-bin/link", "/etc/passwd")),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink"],
)
def test_unsafe_archive_members_are_refused_before_writing(tmp_path, evil) -> None:
    archive = tmp_path / "evil.tar.gz"
    _cifar_archive(archive, extra=evil)
    dest = tmp_path / "out" / "extracted"
    with pytest.raises(CnnlabError, match="refusing to extract"):
        safe_extract(archive, dest)
    assert not dest.exists() and list((tmp_path / "out").iterdir()) == []  # nothing written, temp removed
    assert not (tmp_path / "evil.txt").exists()


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def test_corrupt_batch_file_is_reported(tmp_path) -> None:
    path = tmp_path / "data_batch_1.bin"
    np.zeros(3000, np.uint8).tofile(path)
    with pytest.raises(CnnlabError, match="not a CIFAR-10 binary batch"):
        cifar10.read_batches([path])
