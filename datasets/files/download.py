"""Verified downloads from a list of mirrors, and safe archive extraction.

Every file is checked against its md5, or, when its md5 is None (a custom copy), for being
readable as what its name says (check_format: a complete gzip, tar or zip) and by the
dataset's own `validate`. Downloads stream into a temporary file beside the target
(datasets/files/fetch.py: credentials, progress, stalls) and are renamed into place only once
verified, so an interrupted, corrupt or wrong download (an HTML page served with status 200)
leaves nothing behind and the next mirror is tried. A directory that already holds the
verified files is used as is, without writes, so a read-only copy (a Kaggle input) works.
"""
import gzip
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import zipfile
import zlib
from pathlib import Path

from datasets.files.fetch import fetch, remove_stale_parts
from utils.errors import DataError
from utils.urls import redact_url

CHUNK = 1 << 20
READ_ERRORS = (OSError, EOFError, zlib.error, tarfile.TarError, zipfile.BadZipFile)


def md5sum(path) -> str:
    """Hex md5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_format(name: str, path: Path) -> None:
    """ValueError (a phrase: 'not a readable gzip file (...)') unless the file at `path` reads
    through as what `name` says: .tar.gz/.tgz/.tar a tar archive with members, every one
    readable; .gz a complete gzip stream; .npz/.zip a zip whose every member's CRC matches.
    Other names are not checked."""
    kind = ("tar" if name.endswith((".tar.gz", ".tgz", ".tar")) else "gzip" if name.endswith(".gz")
            else "zip" if name.endswith((".npz", ".zip")) else None)
    try:
        if kind == "tar":
            with tarfile.open(path, "r|*") as tar:
                members = 0
                for members, member in enumerate(tar, 1):
                    if member.isfile():
                        shutil.copyfileobj(tar.extractfile(member), _Discard(), CHUNK)
            if not members:
                raise ValueError("an empty tar archive")
        elif kind == "gzip":
            with gzip.open(path, "rb") as file:
                shutil.copyfileobj(file, _Discard(), CHUNK)
        elif kind == "zip":
            with zipfile.ZipFile(path) as archive:
                if (bad := archive.testzip()) is not None:
                    raise ValueError(f"a zip file whose member {bad} is corrupt")
    except READ_ERRORS as error:
        raise ValueError(f"not a readable {kind} file ({error})") from None


class _Discard:
    """A file that forgets what is written to it."""

    def write(self, data):
        return len(data)


def check_file(name: str, path: Path, md5, validate=None) -> None:
    """ValueError (a phrase) unless the file at `path`, stored as `name`, has the md5 `md5`, or,
    when md5 is None, passes check_format and `validate(name, path)` (if given)."""
    if md5 is not None:
        if (actual := md5sum(path)) != md5:
            raise ValueError(f"its md5 is {actual}, expected {md5}")
        return
    check_format(name, path)
    if validate is not None:
        validate(name, path)


def problem(path: Path, md5, validate=None):
    """None when the file exists and passes check_file; else what is wrong, as a phrase:
    'is missing', 'is present but its md5 is X, expected Y', 'is present but unreadable (...)',
    'is present but not a readable gzip file (...)'."""
    if not path.exists():
        return "is missing"
    if not path.is_file():
        return "is present but is not a file"
    try:
        check_file(path.name, path, md5, validate)
    except OSError as error:
        return f"is present but unreadable ({error.strerror or error})"
    except ValueError as error:
        return f"is present but {error}"
    return None


def ensure_files(root, files: dict, mirrors, download: bool, dataset_name: str, companions: dict = None,
                 layout_hint: str = "", validate=None) -> Path:
    """Make sure `root` holds every file of `files` (name -> md5 or None) and return root.

    Verified files are kept without any write; a file whose md5 is None is verified by
    check_format and `validate(name, path)`, which raises ValueError (a phrase saying what is
    wrong) for content that is not the dataset's. Missing or bad ones are downloaded from
    `mirrors` (base URLs, tried in order; `user:password@` in one is sent as Basic auth and
    never shown) when `download` is true, after removing the `.part` files of killed
    downloads (datasets/files/fetch.py). When that is impossible,
    raises DataError naming every file of `files` and of `companions` (the dataset's other
    files, name -> md5, not needed now) that is missing or bad, and what to do about each;
    `layout_hint` adds a dataset's other way of providing them.
    """
    root = Path(root)
    problems = {name: why for name, md5 in files.items() if (why := problem(root / name, md5, validate))}
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
        remove_stale_parts(root)
        for name in problems:
            for mirror in mirrors:
                url = mirror.rstrip("/") + "/" + name
                try:
                    fetch(url, root / name, lambda path: check_file(name, path, files[name], validate))
                    failures.pop(name)
                    break
                except (OSError, ValueError, http.client.HTTPException) as error:
                    failures[name].append(redact_url(f"{url}: {_reason(error)}"))
                    print(f"  failed: {failures[name][-1]}")
    if failures:
        unusable = {name: problems[name] for name in failures}
        unusable.update({name: why for name, md5 in (companions or {}).items()
                         if (why := problem(root / name, md5, validate))})
        every = {**files, **(companions or {})}
        raise DataError(_placement_message(root, unusable, every, failures, dataset_name, download, layout_hint))
    return root


def _reason(error: Exception) -> str:
    """Why a download failed: 'HTTP Error 404: Not Found', the cause a URLError wraps, or the message."""
    return str(error if isinstance(error, urllib.error.HTTPError) else getattr(error, "reason", error))


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
