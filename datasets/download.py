"""Verified downloads from a list of mirrors, and safe archive extraction.

Every file is checked against its md5; downloads stream into a temporary file beside the
target and are renamed into place only once verified, so an interrupted or corrupt download
leaves nothing behind. A directory that already holds the verified files is used as is,
without writes, so a read-only copy (a Kaggle input) works.
"""
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from utils.errors import DataError

CHUNK = 1 << 20
TIMEOUT_SECONDS = 30


def md5sum(path) -> str:
    """Hex md5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_valid(path: Path, md5) -> bool:
    """The file exists and, when an md5 is given, matches it."""
    return path.is_file() and (md5 is None or md5sum(path) == md5)


def fetch(url: str, target: Path, md5) -> None:
    """Download `url` to `target` atomically; raise OSError/ValueError on any failure."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            expected = response.headers.get("Content-Length")
            shutil.copyfileobj(response, out, CHUNK)
        size = Path(tmp).stat().st_size
        if expected is not None and size != int(expected):
            raise ValueError(f"truncated: {size} of {expected} bytes")
        if md5 is not None and (actual := md5sum(tmp)) != md5:
            raise ValueError(f"md5 {actual} instead of {md5}")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def ensure_files(root, files: dict, mirrors, download: bool, dataset_name: str) -> Path:
    """Make sure `root` holds every file of `files` (name -> md5 or None) and return root.

    Verified files are kept without any write. Missing or bad ones are downloaded from
    `mirrors` (base URLs, tried in order) when `download` is true. Raises DataError saying
    which files to place where when that is impossible.
    """
    root = Path(root)
    missing = {name: md5 for name, md5 in files.items() if not is_valid(root / name, md5)}
    if not missing:
        return root
    failures = {name: [] for name in missing}
    if download:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DataError(f"Cannot create the {dataset_name} directory {root} ({error.strerror}): "
                            f"set data.root to a writable directory or place the files there by hand.") from None
        if not os.access(root, os.W_OK):
            raise DataError(f"The {dataset_name} directory {root} is read-only and lacks "
                            f"{', '.join(missing)}: set data.root to a writable directory.")
        for name, md5 in missing.items():
            for mirror in mirrors:
                url = mirror.rstrip("/") + "/" + name
                try:
                    print(f"Downloading {url}")
                    fetch(url, root / name, md5)
                    failures.pop(name)
                    break
                except (OSError, ValueError, http.client.HTTPException) as error:
                    failures[name].append(f"{url}: {getattr(error, 'reason', error)}")
    if failures:
        raise DataError(_placement_message(root, {n: missing[n] for n in failures}, failures, dataset_name,
                                           download))
    return root


def _placement_message(root, missing, failures, dataset_name, download) -> str:
    files = "; ".join(f"{name} (md5 {md5 or 'not checked'})" for name, md5 in missing.items())
    tried = " ".join(f"[{attempt}]" for attempts in failures.values() for attempt in attempts)
    how = f"Every mirror failed: {tried}. " if download else "Downloading is off (data.download=False). "
    return (f"{dataset_name} files are missing or corrupt in {root}. {how}"
            f"Place these files there by hand: {files}; or point data.root at a directory that holds them "
            f"(data.md5=None accepts a copy whose checksums differ).")


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    path = Path(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise DataError(f"Archive {archive} holds the member '{member.name}', whose path leaves the "
                        f"target directory: the archive is corrupt or malicious; delete it and download again.")
    if not (member.isfile() or member.isdir()):
        raise DataError(f"Archive {archive} holds '{member.name}', which is a link or special file: "
                        f"refusing to extract it; delete the archive and download again.")


def extract_archive_safely(archive, root) -> list:
    """Extract a .tar.gz into `root` through a temporary directory inside it.

    Refuses absolute paths, `..`, links and special files. Each top-level entry of the
    archive (e.g. `images/`) is renamed into `root` only once everything is extracted.
    Returns the names of those entries.
    """
    archive, root = Path(archive), Path(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", dir=root))
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            tar.extractall(tmp, members=members, filter="data")
        entries = sorted(p.name for p in tmp.iterdir())
        for name in entries:
            if (root / name).exists():
                raise DataError(f"{root / name} already exists: remove it to extract {archive} again.")
            os.replace(tmp / name, root / name)
        return entries
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"Archive {archive} cannot be extracted ({error}): delete it and download again.") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
