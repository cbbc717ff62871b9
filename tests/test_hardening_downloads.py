"""Hardening II (issue 20), items 2, 3, 6, 8 and 21 on untrusted inputs: image files of other
formats, credentials in URLs, downloads that are not what they claim or that stall, leftovers
of killed downloads and the modes of downloaded files."""
import base64
import contextlib
import gzip
import http.server
import io
import os
import re
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import time
from urllib.parse import quote

import numpy as np
import pytest
from easydict import EasyDict
from PIL import EpsImagePlugin, Image

from datasets.files import fetch, image_files
from datasets.files.download import ensure_files
from datasets.kmnist import KMNIST, check_idx
from datasets.oxford_pet import check_archive
from datasets.synthetic import write_kmnist_idx
from executors.benchmark.baseline import ImageFiles
from utils.cli import run
from utils.config import load_config
from utils.errors import DataError
from utils.urls import redact_url, split_credentials

EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\n"
       b"newpath 0 0 moveto 16 16 lineto stroke\nshowpage\n%%EOF\n")
PDF = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
       b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")


@pytest.fixture
def no_subprocess(monkeypatch):
    """Fail the test if anything starts a program (PIL's EPS plugin runs Ghostscript)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a subprocess was started: {args}")
    for name in ("Popen", "check_call", "run", "call", "check_output"):
        monkeypatch.setattr(subprocess, name, refuse)
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # as in a fresh process: PIL would probe for gs


@pytest.mark.parametrize("for_prediction", [False, True])
@pytest.mark.parametrize("name, content, found", [("x.jpg", EPS, "PostScript (EPS)"), ("scan.png", PDF, "PDF")])
def test_a_file_of_another_format_is_refused_by_name_without_running_a_program(
        tmp_path, no_subprocess, name, content, found, for_prediction):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError) as raised:
        image_files.read_image(tmp_path / name, for_prediction=for_prediction)
    assert str(raised.value).startswith(
        f"Cannot read the image {tmp_path / name}: its content is in the {found} format, not one of those read "
        f"here (PNG, JPEG, GIF, BMP, TIFF, WebP).")


def test_an_image_format_pil_reads_but_photos_are_not_in_is_refused_with_pil_s_name(tmp_path, no_subprocess):
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(tmp_path / "icon.ico", format="ICO")
    (tmp_path / "icon.ico").rename(tmp_path / "photo.jpg")
    with pytest.raises(DataError, match=r"photo\.jpg: its content is in the ICO format, not one of those"):
        image_files.read_image(tmp_path / "photo.jpg")


def test_the_six_photo_formats_still_open_whatever_their_file_name(tmp_path, no_subprocess):
    pixels = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    for fmt in ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"):
        path = tmp_path / f"{fmt}.dat"
        Image.fromarray(pixels).save(path, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
        image, _ = image_files.read_image(path)
        assert image.size == (16, 16) and image.mode in ("RGB", "L"), fmt


def test_the_benchmark_baseline_opens_only_the_photo_formats_too(tmp_path, no_subprocess):
    (tmp_path / "x.jpg").write_bytes(EPS)
    with pytest.raises(Image.UnidentifiedImageError):
        ImageFiles([tmp_path / "x.jpg"], [0], transform=lambda image: image)[0]


# --- downloads: a local HTTP server whose answers each test scripts ---------------------------

KMNIST_NAMES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
PASSWORD = "s3cr:t@pw"  # a ':' and an '@' inside: must be percent-encoded in a URL
HTML = b"<!DOCTYPE html><html><body>Please sign in</body></html>\n"


@contextlib.contextmanager
def http_answers(respond):
    """Serve on 127.0.0.1 at a free port, answering each GET with `respond(handler)`; yields the
    base URL. A handler still sleeping when the test ends is woken by `release` (an Event)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            respond(self)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        release.set()
        server.shutdown()
        server.server_close()


release = threading.Event()


def send(handler, body: bytes, status=200, length=None, headers=()):
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(body) if length is None else length))
    for key, value in headers:
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(body)


def files_of(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture
def good(tmp_path):
    """{name: bytes} of the two KMNIST train files (synthetic, real idx.gz format)."""
    write_kmnist_idx(tmp_path / "good")
    return {name: (tmp_path / "good" / name).read_bytes() for name in KMNIST_NAMES}


def serving(files):
    """A respond() that serves `files` ({name: bytes}) and answers 404 for anything else."""
    def respond(handler):
        name = handler.path.rsplit("/", 1)[-1]
        send(handler, files[name]) if name in files else send(handler, b"not found", status=404)
    return respond


def chain(error: BaseException):
    """`error` and every exception chained to it (cause and context)."""
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


# --- item 3: credentials in mirror URLs ---------------------------------------------------------

def test_redact_url_hides_every_password_whole_and_nothing_else():
    assert redact_url("http://ann:p@ss:w@host:5000/x?a=b") == "http://ann:<hidden>@host:5000/x?a=b"
    assert redact_url("tried [https://a:b@m1/f.gz: 404] [https://c:d@m2/f.gz: 500]") == \
        "tried [https://a:<hidden>@m1/f.gz: 404] [https://c:<hidden>@m2/f.gz: 500]"
    assert redact_url("https://token@host/ and file:///tmp/x and a:b@c") == "https://token@host/ and file:///tmp/x and a:b@c"
    assert split_credentials(f"https://ann:{quote(PASSWORD, safe='')}@host:8/dir/") == ("https://host:8/dir/", "ann", PASSWORD)


def basic_auth_only(files, seen):
    """A respond() serving `files` only with the Authorization ann:PASSWORD, 401 otherwise;
    appends each request's Authorization header (or None) to `seen`."""
    expected = "Basic " + base64.b64encode(f"ann:{PASSWORD}".encode()).decode()

    def respond(handler):
        seen.append(handler.headers.get("Authorization"))
        if handler.headers.get("Authorization") != expected:
            return send(handler, b"who are you?", status=401, headers=[("WWW-Authenticate", 'Basic realm="m"')])
        serving(files)(handler)
    return respond


def with_credentials(url, password=PASSWORD):
    return url.replace("http://", f"http://ann:{quote(password, safe='')}@")


def test_a_mirror_with_credentials_downloads_with_basic_auth_and_never_shows_the_password(good, tmp_path, capfd):
    seen = []
    with http_answers(basic_auth_only(good, seen)) as url:
        ensure_files(tmp_path / "root", dict.fromkeys(KMNIST_NAMES), [with_credentials(url)], True, "KMNIST")
    assert files_of(tmp_path / "root") == good and len(seen) == 2
    printed = "".join(capfd.readouterr())
    assert f"Downloading {url.replace('http://', 'http://ann:<hidden>@')}{KMNIST_NAMES[0]}" in printed
    assert PASSWORD not in printed and quote(PASSWORD, safe="") not in printed


def test_refused_credentials_fail_with_messages_and_chains_free_of_the_password(good, tmp_path, capfd):
    wrong = "wr0ng:pw@x"
    with http_answers(basic_auth_only(good, [])) as url:
        with pytest.raises(DataError) as raised:
            ensure_files(tmp_path / "root", dict.fromkeys(KMNIST_NAMES), [with_credentials(url, wrong)], True, "KMNIST")
    hidden = url.replace("http://", "http://ann:<hidden>@")
    assert f"Every mirror failed: [{hidden}{KMNIST_NAMES[0]}: HTTP Error 401: Unauthorized]" in str(raised.value)
    texts = [str(error) + repr(error.args) for error in chain(raised.value)] + list(capfd.readouterr())
    assert not [text for text in texts if wrong in text or quote(wrong, safe="") in text]
    assert os.listdir(tmp_path / "root") == []


def test_credentials_are_not_sent_on_to_the_host_a_mirror_redirects_to(good, tmp_path):
    seen = []
    with http_answers(lambda handler: (seen.append(handler.headers.get("Authorization")),
                                       serving(good)(handler))) as elsewhere:
        def redirect(handler):
            send(handler, b"", status=302, headers=[("Location", elsewhere + handler.path.rsplit("/", 1)[-1])])
        with http_answers(redirect) as url:
            ensure_files(tmp_path / "root", dict.fromkeys(KMNIST_NAMES), [with_credentials(url)], True, "KMNIST")
    assert files_of(tmp_path / "root") == good and seen == [None, None]


def test_a_cli_error_quoting_a_url_hides_its_password(capsys):
    def main():
        load_config("mlp", [f"data.mirrors='https://ann:{PASSWORD}@mirror.example/'"])  # a str, not a list
    with pytest.raises(SystemExit) as exit_status:
        run(main)
    err = capsys.readouterr().err
    assert exit_status.value.code == 2 and "https://ann:<hidden>@mirror.example/" in err and PASSWORD not in err


# --- item 8: a download that is not the file (md5 None), and a mirror that stalls ---------------

def gzip_cut(data: bytes) -> bytes:
    return data[:len(data) // 2]  # served with its own Content-Length: only the gzip stream says it is cut


@pytest.mark.parametrize("first, reason", [
    ({name: HTML for name in KMNIST_NAMES}, "not a readable gzip file (Not a gzipped file (b'<!'))"),
    ("cut", "not a readable gzip file (Compressed file ended before the end-of-stream marker was reached)"),
    ({name: gzip.compress(b"a gzip of something else") for name in KMNIST_NAMES},
     "not an idx file of 3-D unsigned bytes (bad header)"),
])
def test_with_md5_none_a_download_that_is_not_the_file_falls_through_to_the_next_mirror(
        good, tmp_path, capfd, first, reason):
    first = {name: gzip_cut(data) for name, data in good.items()} if first == "cut" else first
    cfg = EasyDict(root=str(tmp_path / "root"), download=True, md5=None, mirrors=[])
    with http_answers(serving(first)) as bad, http_answers(serving(good)) as right:
        cfg.mirrors = [bad, right]
        KMNIST(cfg, "train")
    assert files_of(tmp_path / "root") == good  # nothing else left either
    assert f"  failed: {bad}{KMNIST_NAMES[0]}: {reason}\nDownloading {right}{KMNIST_NAMES[0]}\n" in capfd.readouterr().out


def test_a_bad_file_an_earlier_run_kept_is_downloaded_again_when_md5_is_none(good, tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / KMNIST_NAMES[0]).write_bytes(HTML)
    with http_answers(serving(good)) as url:
        ensure_files(tmp_path / "root", dict.fromkeys(KMNIST_NAMES), [url], True, "KMNIST", validate=check_idx)
    assert files_of(tmp_path / "root") == good


def test_bad_files_with_md5_none_and_downloading_off_say_what_they_are(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(HTML)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"no idx header"))  # a companion
    with pytest.raises(DataError) as raised:
        ensure_files(tmp_path, {"train-images-idx3-ubyte.gz": None}, [], False, "KMNIST", validate=check_idx,
                     companions={"t10k-images-idx3-ubyte.gz": None})
    assert str(raised.value).startswith(
        f"KMNIST files in {tmp_path} are not usable: train-images-idx3-ubyte.gz is present but not a readable gzip "
        f"file (Not a gzipped file (b'<!')); t10k-images-idx3-ubyte.gz is present but not an idx file of 3-D "
        f"unsigned bytes (bad header). Downloading is off")


def make_tar_gz(members: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_archives_with_md5_none_are_read_through_and_must_hold_the_release_folder(tmp_path, capfd):
    right = make_tar_gz({"annotations/trainval.txt": b"x 1 1 1\n" * 2000, "annotations/test.txt": b"y 1 1 1\n"})
    other = make_tar_gz({"somewhere/else.txt": b"z"})
    with http_answers(serving({"annotations.tar.gz": HTML})) as html, \
            http_answers(serving({"annotations.tar.gz": right[:len(right) // 2]})) as cut, \
            http_answers(serving({"annotations.tar.gz": other})) as wrong, \
            http_answers(serving({"annotations.tar.gz": right})) as good_url:
        ensure_files(tmp_path, {"annotations.tar.gz": None}, [html, cut, wrong, good_url], True, "Oxford-IIIT Pet",
                     validate=check_archive)
    assert (tmp_path / "annotations.tar.gz").read_bytes() == right
    failed = [line for line in capfd.readouterr().out.splitlines() if line.startswith("  failed: ")]
    assert [line.split(".tar.gz: ", 1)[1].split(" (")[0] for line in failed] == [
        "not a readable tar file", "not a readable tar file",
        "not the release's annotations.tar.gz: it does not start with the folder annotations/"]


def sleeps_after(data: bytes):
    """A respond() that announces `data`, sends its first 10 bytes, then goes silent (for 5 s at
    most, so a client that waits for ever fails the test quickly too)."""
    def respond(handler):
        send(handler, data[:10], length=len(data))
        handler.wfile.flush()
        release.wait(5)
    return respond


def trickles(data: bytes):
    """A respond() that announces `data` and sends it one byte every 50 ms, for 5 s at most."""
    def respond(handler):
        send(handler, b"", length=len(data))
        for byte in data[:100]:
            if release.wait(0.05):
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
    return respond


@pytest.mark.parametrize("slow, reason", [(sleeps_after, "stalled: no data for 1 s"),
                                          (trickles, "stalled: 2\\d bytes in 1 s")])
def test_a_mirror_that_stalls_or_trickles_is_given_up_for_the_next(good, tmp_path, capfd, monkeypatch, slow, reason):
    monkeypatch.setattr(fetch, "STALL_SECONDS", 1.0)
    release.clear()
    started = time.monotonic()
    with http_answers(slow(good[KMNIST_NAMES[0]])) as stalled, http_answers(serving(good)) as right:
        ensure_files(tmp_path / "root", dict.fromkeys(KMNIST_NAMES), [stalled, right], True, "KMNIST")
    assert time.monotonic() - started < 6  # two stalls of about 1 s, and the rest
    assert files_of(tmp_path / "root") == good
    failed = [line for line in capfd.readouterr().out.splitlines() if line.startswith("  failed: ")]
    assert len(failed) == 2 and all(re.fullmatch(rf"  failed: {stalled}\S+: {reason}", line) for line in failed)


def test_progress_off_a_terminal_is_plain_lines_up_to_the_whole_size(good, tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(fetch, "PROGRESS_SECONDS", 0.0)
    with http_answers(serving(good)) as url:
        ensure_files(tmp_path / "root", dict.fromkeys(KMNIST_NAMES[:1]), [url], True, "KMNIST")
    lines = capfd.readouterr().out.splitlines()
    size = len(good[KMNIST_NAMES[0]]) / 1e6
    assert lines[0] == f"Downloading {url}{KMNIST_NAMES[0]}"
    assert re.fullmatch(rf"  {KMNIST_NAMES[0]}: {size:.1f} of {size:.1f} MB \(100%\), [\d.]+ MB/s", lines[-1])


# --- items 6 and 21: leftovers of killed downloads, and the mode of downloaded files ------------

def test_the_next_download_removes_the_parts_of_dead_downloads_and_keeps_live_ones(good, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    dead_pid = int(open("/proc/sys/kernel/pid_max").read()) + 1  # no process can have it
    host = socket.gethostname().replace(".", "-")
    name = KMNIST_NAMES[0]
    dead = root / f".{name}.{host}.{dead_pid}.0a1b2c3d.part"
    live = root / f".{name}.{host}.{os.getpid()}.0a1b2c3d.part"  # a download running in this process
    other_host = root / f".{name}.elsewhere.{dead_pid}.0a1b2c3d.part"  # its pid says nothing here
    old_style, old_fresh = root / f".{name}.k3j_2x9q.part", root / f".{name}.a8d_7w2e.part"  # mkstemp's names
    for part in (dead, live, other_host, old_style, old_fresh):
        part.write_bytes(b"half a download")
    hours_ago = time.time() - 2 * 3600
    os.utime(old_style, (hours_ago, hours_ago))
    with http_answers(serving(good)) as url:
        ensure_files(root, dict.fromkeys(KMNIST_NAMES), [url], True, "KMNIST")
    assert sorted(os.listdir(root)) == sorted([live.name, other_host.name, old_fresh.name, *KMNIST_NAMES])


def test_a_download_killed_midway_leaves_a_part_that_the_next_run_removes(good, tmp_path):
    root = tmp_path / "root"
    release.clear()
    with http_answers(sleeps_after(good[KMNIST_NAMES[0]])) as stalled:
        child = subprocess.Popen([sys.executable, "-c", "import sys; from datasets.files.download import ensure_files; "
                                  "ensure_files(sys.argv[1], {sys.argv[2]: None}, [sys.argv[3]], True, 'KMNIST')",
                                  str(root), KMNIST_NAMES[0], stalled], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while not list(root.glob(".*.part")) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            child.kill()
            child.wait()
    assert len(list(root.glob(".*.part"))) == 1  # what SIGKILL leaves
    with http_answers(serving(good)) as url:
        ensure_files(root, dict.fromkeys(KMNIST_NAMES), [url], True, "KMNIST")
    assert sorted(os.listdir(root)) == sorted(KMNIST_NAMES)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_downloaded_files_get_the_mode_a_plain_open_gives(good, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        with http_answers(serving(good)) as url:
            ensure_files(tmp_path / "root", dict.fromkeys(KMNIST_NAMES), [url], True, "KMNIST")
    finally:
        os.umask(old)
    assert {name: stat.S_IMODE((tmp_path / "root" / name).stat().st_mode) for name in KMNIST_NAMES} == \
        dict.fromkeys(KMNIST_NAMES, mode)
