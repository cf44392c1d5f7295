"""Verified downloads and safe archive extraction.

``download(url, sha256, dest)`` streams to a private ``.dest.<random>.part`` (through
:func:`cnnlab.files.atomic_write`) while hashing, checks the SHA-256, then renames into place, so an
interrupted or corrupted download never looks finished. ``safe_extract`` unpacks a tar archive into a
fresh folder and refuses members that could write outside it (absolute paths, ``..``, links, devices),
then renames the folder into place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write

CHUNK = 1 << 20


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """Where downloads live: ``path``, else ``$CNNLAB_CACHE``, else ``~/.cache/cnnlab``."""
    if path is not None:
        return Path(path).expanduser()
    return Path(os.environ.get("CNNLAB_CACHE") or Path.home() / ".cache" / "cnnlab").expanduser()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(path: Path, url: str, expected: str, actual: str) -> CnnlabError:
    return CnnlabError(f"SHA-256 mismatch for {path} (from {url}): expected {expected}, got {actual}; "
                       f"the file is corrupt or was changed on the server: delete {path} and retry")


def download(url: str, sha256: str, dest: str | os.PathLike, *, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` once and verify its SHA-256; an existing ``dest`` is re-verified."""
    dest = Path(dest)
    sha256 = sha256.lower()
    if dest.exists():
        actual = sha256_of(dest)
        if actual != sha256:
            raise _mismatch(dest, url, sha256, actual)
        return dest
    if not url.startswith(("http://", "https://")):
        raise CnnlabError(f"refusing to download {url!r}: only http:// and https:// URLs are fetched")

    def fetch_verified(part: Path) -> None:
        """Stream ``url`` into ``part`` while hashing; raising here (network error, wrong SHA-256)
        makes atomic_write delete ``part``, so only a complete, verified file is renamed to ``dest``."""
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with _bar(dest.name, total, progress) as advance:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    advance(len(chunk))
        actual = digest.hexdigest()
        if actual != sha256:
            raise CnnlabError(f"SHA-256 mismatch for {part} (from {url}): expected {sha256}, got {actual}; "
                              "the download is corrupt or the file was changed on the server. The unverified "
                              "file was deleted and nothing was put in place: retry, or check the URL and hash")

    # a private .part per call: the ranks of a distributed run may all download at once; each renames
    # a complete, verified copy into place, and the last rename wins with identical bytes
    try:
        return atomic_write(dest, fetch_verified, suffix=".part")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:  # the partial file is already gone
        reason = getattr(exc, "reason", exc)
        raise CnnlabError(f"cannot download {url}: {reason}; check the network and retry, or put the file at "
                          f"{dest} yourself (SHA-256 {sha256})") from None


class _bar:
    """rich progress bar for a download (bytes), on stderr; a no-op when disabled."""

    def __init__(self, name: str, total: int | None, enabled: bool) -> None:
        self.name, self.total, self.enabled = name, total, enabled

    def __enter__(self):  # type: ignore[no-untyped-def]
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self.progress = Progress(TextColumn(f"downloading {self.name}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), console=Console(stderr=True), transient=True)
        self.progress.__enter__()
        task = self.progress.add_task("download", total=self.total)
        return lambda n: self.progress.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.__exit__(*exc)


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or member.name.startswith(("/", "\\")) or ".." in name.parts or ":" in member.name:
        raise CnnlabError(f"archive {archive} has an unsafe member path {member.name!r} (absolute or '..'); "
                          "refusing to extract it: delete the archive and download it again")
    if not (member.isfile() or member.isdir()):
        raise CnnlabError(f"archive {archive} has a member {member.name!r} that is a link or special file; "
                          "refusing to extract it: delete the archive and download it again")


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a tar archive into ``dest`` (which must not exist yet), refusing unsafe members.

    Every member is checked before anything is written; extraction goes to a temporary sibling folder
    that is renamed to ``dest`` at the end, so ``dest`` exists only when complete."""
    archive, dest = Path(archive), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent))
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            for member in members:
                target = tmp / member.name
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as out:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, out, CHUNK)
        os.replace(tmp, dest)  # a directory rename (atomic_write is for files): dest appears complete or not at all
    except tarfile.TarError as exc:
        raise CnnlabError(f"archive {archive} is not a readable tar file ({exc}); delete it and download it again") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest
