"""One URL streamed into a temporary file beside its target, renamed into place only once
complete and checked (datasets/files/download.py chooses the mirrors and the check).

* Credentials in a URL (`https://user:password@host/...`) are taken out of it and sent as an
  HTTP Basic `Authorization` header to that host only (not to a host it redirects to), so
  urllib never sees them and none of its messages can hold them; every URL printed goes
  through utils.urls.redact_url.
* Progress: a tqdm bar on a terminal (stderr), else a plain line every PROGRESS_SECONDS.
* A stall gives up (TimeoutError): no byte for STALL_SECONDS, or fewer than STALL_BYTES in any
  STALL_SECONDS (a server that trickles).
* The temporary is `.<name>.<host>.<pid>.<random>.part`, created as a plain open() creates a
  file (mode 0666 minus the umask, not mkstemp's 0600), and removed on any failure;
  remove_stale_parts deletes those a killed process left.
"""
import os
import secrets
import socket
import sys
import time
import urllib.request
from pathlib import Path

from tqdm import tqdm

from utils.urls import basic_auth_header, redact_url, split_credentials

CHUNK = 1 << 20
STALL_SECONDS = 30.0  # also the connection timeout
STALL_BYTES = 64 * 1024
PROGRESS_SECONDS = 10.0
STALE_PART_SECONDS = 3600.0  # a .part not written for this long is dead, whoever wrote it
PART_SUFFIX = ".part"


def fetch(url: str, target: Path, check) -> None:
    """Download `url` to `target`; `check(path)` raises ValueError when the downloaded file is
    not the expected one. Raises OSError, ValueError or http.client.HTTPException on any
    failure, with messages that never hold the URL's password; `target` is untouched then."""
    plain, user, password = split_credentials(url)
    request = urllib.request.Request(plain)
    if user is not None:
        request.add_unredirected_header("Authorization", basic_auth_header(user, password))
    tmp = target.parent / f".{target.name}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}{PART_SUFFIX}"
    print(f"Downloading {redact_url(url)}")
    try:
        with open(tmp, "xb") as out, urllib.request.urlopen(request, timeout=STALL_SECONDS) as response:
            expected = response.headers.get("Content-Length")
            _stream(response, out, target.name, int(expected) if expected and expected.isdigit() else None)
        size = tmp.stat().st_size
        if expected is not None and size != int(expected):
            raise ValueError(f"truncated: {size} of {expected} bytes")
        check(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _stream(response, out, name: str, length) -> None:
    """Copy `response` into `out`, showing progress; TimeoutError when it trickles."""
    bar = tqdm(total=length, desc=name, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
               dynamic_ncols=True) if sys.stderr.isatty() else None
    start = window_start = last_line = time.monotonic()
    done = window_bytes = 0
    try:
        while chunk := _read(response):
            out.write(chunk)
            done, window_bytes, now = done + len(chunk), window_bytes + len(chunk), time.monotonic()
            if now - window_start >= STALL_SECONDS:
                if window_bytes < STALL_BYTES:
                    raise TimeoutError(f"stalled: {window_bytes} bytes in {now - window_start:.0f} s")
                window_start, window_bytes = now, 0
            if bar is not None:
                bar.update(len(chunk))
            elif now - last_line >= PROGRESS_SECONDS:
                last_line = now
                print(f"  {name}: {_progress(done, length)}, {done / (now - start) / 1e6:.1f} MB/s")
    finally:
        if bar is not None:
            bar.close()


def _read(response) -> bytes:
    """What arrived of `response` (up to CHUNK bytes; b'' at its end) without waiting for a
    whole chunk; TimeoutError when nothing arrives for STALL_SECONDS."""
    try:
        return getattr(response, "read1", response.read)(CHUNK)
    except TimeoutError:
        raise TimeoutError(f"stalled: no data for {STALL_SECONDS:g} s") from None


def _progress(done: int, length) -> str:
    """'12.3 of 755.0 MB (2%)', or '12.3 MB' when the length is unknown."""
    if not length:
        return f"{done / 1e6:.1f} MB"
    return f"{done / 1e6:.1f} of {length / 1e6:.1f} MB ({100 * done // length}%)"


def _host() -> str:
    """This machine's name without dots, as .part names hold it."""
    return socket.gethostname().replace(".", "-") or "localhost"


def remove_stale_parts(folder: Path) -> list:
    """Delete the `.part` files in `folder` that no live download writes: those of a process
    of this machine that is gone, and any not written for STALE_PART_SECONDS (another
    machine's, or an older naming). Returns the paths removed."""
    removed = []
    for part in folder.glob(f".*{PART_SUFFIX}"):
        fields = part.name[:-len(PART_SUFFIX)].rsplit(".", 3)
        try:
            owner_gone = (len(fields) == 4 and fields[1] == _host() and fields[2].isdigit()
                          and not _alive(int(fields[2])))
            if owner_gone or time.time() - part.stat().st_mtime > STALE_PART_SECONDS:
                part.unlink()
                removed.append(part)
        except FileNotFoundError:
            continue  # its writer finished or removed it meanwhile
    return removed


def _alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    return True
