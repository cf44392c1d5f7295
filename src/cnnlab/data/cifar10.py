"""CIFAR-10 from the authors' binary archive (no pickle): downloaded once, verified, extracted safely.

The binary format (https://www.cs.toronto.edu/~kriz/cifar.html): each record is 1 label byte followed by
3,072 pixel bytes (1,024 red, 1,024 green, 1,024 blue, row-major 32x32); ``data_batch_1..5.bin`` hold the
50,000 training images and ``test_batch.bin`` the 10,000 test images; ``batches.meta.txt`` the names.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.download import cache_dir, download, safe_extract
from cnnlab.errors import CnnlabError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
# 170,052,171 bytes. The site publishes md5 c32a1d4ab5d03f1284b67883e8d87530; this SHA-256 is the one
# pinned by other loaders of the same file (Julia MLDatasets, torchvision's Ruby port) and agrees with it.
SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
ARCHIVE = "cifar-10-binary.tar.gz"
FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
RECORD = 1 + 3 * 32 * 32


def read_batches(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary batch files -> (uint8 (N, 3, 32, 32), int64 (N,))."""
    parts = []
    for path in paths:
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % RECORD:
            raise CnnlabError(f"{path} is not a CIFAR-10 binary batch ({raw.size} bytes is not a multiple of "
                              f"{RECORD}); delete {path.parent} to extract the archive again")
        parts.append(raw.reshape(-1, RECORD))
    records = np.concatenate(parts)
    x = torch.from_numpy(records[:, 1:].reshape(-1, 3, 32, 32).copy())
    y = torch.from_numpy(records[:, 0].astype(np.int64))
    return x, y


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in (*TRAIN_FILES, TEST_FILE, "batches.meta.txt"))


def fetch(root: Path, url: str | None = None, sha256: str | None = None) -> Path:
    """The extracted batch folder under ``root``, downloading and extracting the archive if needed.

    Extraction goes to a private temporary folder and the batch folder is renamed into place, so
    concurrent callers (the ranks of a distributed run) never see a half-extracted folder."""
    folder = root / FOLDER
    if _complete(folder):
        return folder
    archive = download(url or URL, sha256 or SHA256, root / ARCHIVE)
    with tempfile.TemporaryDirectory(dir=root, prefix="extract.") as tmp:
        inner = safe_extract(archive, Path(tmp) / "archive") / FOLDER
        if not inner.is_dir():
            raise CnnlabError(f"archive {archive} has no {FOLDER}/ folder; delete it and download it again")
        if folder.exists() and not _complete(folder):  # leftovers of an interrupted manual copy
            shutil.rmtree(folder)
        try:
            os.replace(inner, folder)  # a directory rename (atomic_write is for files)
        except OSError:
            if not _complete(folder):  # anything but "another process finished first" is an error
                raise
    return folder


def load_cifar10(cache: str | os.PathLike | None = None, url: str | None = None, sha256: str | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, list[str], tuple[torch.Tensor, torch.Tensor]]:
    """(x_train, y_train, class_names, (x_test, y_test)) from the cache, downloading once if needed."""
    folder = fetch(cache_dir(cache) / "cifar10", url, sha256)
    names = [line.strip() for line in (folder / "batches.meta.txt").read_text().splitlines() if line.strip()]
    x, y = read_batches([folder / name for name in TRAIN_FILES])
    test = read_batches([folder / TEST_FILE])
    if int(max(y.max(), test[1].max())) >= len(names):
        raise CnnlabError(f"{folder}: labels exceed the {len(names)} names in batches.meta.txt; delete {folder} and retry")
    return x, y, names, test
