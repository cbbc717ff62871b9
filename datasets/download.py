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


def problem(path: Path, md5):
    """None when the file exists and, when an md5 is given, matches it; else what is wrong,
    as a phrase: 'is missing', 'is present but its md5 is X, expected Y', 'is present but unreadable (...)'."""
    if not path.exists():
        return "is missing"
    if not path.is_file():
        return "is present but is not a file"
    if md5 is None:
        return None
    try:
        actual = md5sum(path)
    except OSError as error:
        return f"is present but unreadable ({error.strerror or error})"
    return None if actual == md5 else f"is present but its md5 is {actual}, expected {md5}"


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


def ensure_files(root, files: dict, mirrors, download: bool, dataset_name: str, companions: dict = None,
                 layout_hint: str = "") -> Path:
    """Make sure `root` holds every file of `files` (name -> md5 or None) and return root.

    Verified files are kept without any write. Missing or bad ones are downloaded from
    `mirrors` (base URLs, tried in order) when `download` is true. When that is impossible,
    raises DataError naming every file of `files` and of `companions` (the dataset's other
    files, name -> md5, not needed now) that is missing or bad, and what to do about each;
    `layout_hint` adds a dataset's other way of providing them.
    """
    root = Path(root)
    problems = {name: why for name, md5 in files.items() if (why := problem(root / name, md5))}
    if not problems:
        return root
    failures = {name: [] for name in problems}
    if download:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DataError(f"Cannot create the {dataset_name} directory {root} ({error.strerror}): "
                            f"set data.root to a writable directory or place the files there by hand.") from None
        if not os.access(root, os.W_OK):
            raise DataError(f"The {dataset_name} directory {root} is read-only and {_listing(problems)}: set "
                            f"data.root to a writable directory{_md5_advice(problems)}.")
        for name in problems:
            for mirror in mirrors:
                url = mirror.rstrip("/") + "/" + name
                try:
                    print(f"Downloading {url}")
                    fetch(url, root / name, files[name])
                    failures.pop(name)
                    break
                except (OSError, ValueError, http.client.HTTPException) as error:
                    failures[name].append(f"{url}: {getattr(error, 'reason', error)}")
    if failures:
        unusable = {name: problems[name] for name in failures}
        unusable.update({name: why for name, md5 in (companions or {}).items() if (why := problem(root / name, md5))})
        every = {**files, **(companions or {})}
        raise DataError(_placement_message(root, unusable, every, failures, dataset_name, download, layout_hint))
    return root


def _listing(problems: dict) -> str:
    """'a.gz is missing; b.gz is present but its md5 is X, expected Y'."""
    return "; ".join(f"{name} {why}" for name, why in problems.items())


def _md5_advice(problems: dict) -> str:
    """The fix for files whose md5 differs, or '' when there are none."""
    if not any("md5 is" in why for why in problems.values()):
        return ""
    return ("; a file whose md5 differs is either corrupt (delete it and download again) or a custom copy in "
            "the official format (set data.md5=None to accept it)")


def _placement_message(root, problems, md5s, failures, dataset_name, download, layout_hint) -> str:
    tried = " ".join(f"[{attempt}]" for attempts in failures.values() for attempt in attempts)
    how = f"Every mirror failed: {tried}. " if download else "Downloading is off (data.download=False; True fetches them from the mirrors). "
    absent = [name for name, why in problems.items() if why == "is missing"]
    place = "; ".join(f"{name} (md5 {md5s[name] or 'not checked'})" for name in absent)
    return (f"{dataset_name} files in {root} are not usable: {_listing(problems)}. {how}"
            + (f"Place the missing files there by hand: {place}{layout_hint}; or point data.root at a directory "
               f"that holds them" if absent else "Point data.root at a directory that holds good copies")
            + f"{_md5_advice(problems)}.")


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
