"""Downloads from mirrors against a local HTTP server, and safe archive extraction."""
import gzip
import io
import os
import tarfile
import threading
import http.server

import pytest

from datasets.files.download import ensure_files, extract_archive_safely, md5sum
from datasets.synthetic import write_kmnist_idx
from tests.http_server import http_server
from utils.errors import DataError

NAMES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


@pytest.fixture
def mirror(tmp_path):
    """A directory of good synthetic KMNIST files and their md5s."""
    md5 = write_kmnist_idx(tmp_path / "good")
    return tmp_path / "good", {name: md5[name] for name in NAMES}


def snapshot(directory):
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in directory.iterdir()}


def test_good_download_is_verified(mirror, tmp_path):
    source, md5 = mirror
    with http_server(source) as url:
        ensure_files(tmp_path / "root", md5, [url], True, "KMNIST")
    assert {n: md5sum(tmp_path / "root" / n) for n in NAMES} == md5
    assert sorted(os.listdir(tmp_path / "root")) == sorted(NAMES)  # no temporary files left


def test_md5_mismatch_falls_through_to_the_next_mirror(mirror, tmp_path):
    source, md5 = mirror
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in NAMES:
        (bad / name).write_bytes(b"wrong content")
    with http_server(bad) as bad_url, http_server(source) as good_url:
        ensure_files(tmp_path / "root", md5, [bad_url, good_url], True, "KMNIST")
    assert {n: md5sum(tmp_path / "root" / n) for n in NAMES} == md5


def test_truncated_and_corrupt_downloads_leave_nothing(mirror, tmp_path):
    source, md5 = mirror
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for name in NAMES:
        (truncated / name).write_bytes((source / name).read_bytes()[:100])
    with http_server(truncated) as url:
        with pytest.raises(DataError) as error:
            ensure_files(tmp_path / "root", md5, [url], True, "KMNIST")
    assert "md5" in str(error.value)
    assert os.listdir(tmp_path / "root") == []


class DroppingHandler(http.server.BaseHTTPRequestHandler):
    """Announces 1000 bytes, sends 10, then closes the connection."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"x" * 10)

    def log_message(self, *args):
        pass


def test_connection_dropped_midway_leaves_nothing(mirror, tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), DroppingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
            ensure_files(tmp_path / "root", mirror[1], [f"http://127.0.0.1:{server.server_address[1]}/"],
                         True, "KMNIST")
    finally:
        server.shutdown()
        server.server_close()
    assert os.listdir(tmp_path / "root") == []


def test_all_mirrors_down_says_what_to_place_where(mirror, tmp_path):
    with http_server(tmp_path) as url:
        pass  # the server is closed again: nothing listens on that port any more
    with pytest.raises(DataError) as error:
        ensure_files(tmp_path / "root", mirror[1], [url, url.replace("127.0.0.1", "127.0.0.2")], True, "KMNIST")
    message = str(error.value)
    for name, md5 in mirror[1].items():
        assert name in message and md5 in message
    assert str(tmp_path / "root") in message and "by hand" in message


def test_download_off_with_missing_files(mirror, tmp_path):
    with pytest.raises(DataError, match="data.download=False"):
        ensure_files(tmp_path / "empty", mirror[1], ["http://127.0.0.1:9/"], False, "KMNIST")


def test_verified_read_only_root_is_used_without_writes(mirror):
    source, md5 = mirror
    before = snapshot(source)
    os.chmod(source, 0o555)
    try:
        assert ensure_files(source, md5, ["http://127.0.0.1:9/"], True, "KMNIST") == source
    finally:
        os.chmod(source, 0o755)
    assert snapshot(source) == before


def test_md5_none_accepts_a_custom_copy(tmp_path):
    (tmp_path / "custom.gz").write_bytes(gzip.compress(b"anything"))
    assert ensure_files(tmp_path, {"custom.gz": None}, [], False, "KMNIST") == tmp_path


def make_tar(path, members):
    """members: list of (TarInfo name, bytes or None for a symlink)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_safe_extraction(tmp_path):
    make_tar(tmp_path / "good.tar.gz", [("images/a.jpg", b"a"), ("images/b.jpg", b"bb")])
    root = tmp_path / "root"
    root.mkdir()
    assert extract_archive_safely(tmp_path / "good.tar.gz", root) == ["images"]
    assert (root / "images" / "b.jpg").read_bytes() == b"bb" and os.listdir(root) == ["images"]


@pytest.mark.parametrize("bad_member", ["../evil.txt", "/tmp/evil.txt", "images/../../evil.txt", None])
def test_unsafe_members_are_refused_and_nothing_is_extracted(tmp_path, bad_member):
    members = [("images/a.jpg", b"a")]
    members.append(("images/link.jpg", None) if bad_member is None else (bad_member, b"evil"))
    make_tar(tmp_path / "bad.tar.gz", members)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(DataError, match="bad.tar.gz"):
        extract_archive_safely(tmp_path / "bad.tar.gz", root)
    assert os.listdir(root) == [] and not (tmp_path / "evil.txt").exists()


def test_every_unusable_file_is_named_with_what_is_wrong(mirror, tmp_path):
    """A missing file, one with another md5 and a folder in a file's place, all in one message;
    the file with another md5 is reported as present, with data.md5=None as the way to accept it."""
    source, md5 = mirror
    root = tmp_path / "root"
    root.mkdir()
    (root / NAMES[0]).write_bytes(b"a custom copy")
    (root / "t10k-images-idx3-ubyte.gz").mkdir()
    companions = {"t10k-images-idx3-ubyte.gz": None, "t10k-labels-idx1-ubyte.gz": "1" * 32}
    with pytest.raises(DataError) as error:
        ensure_files(root, md5, [], False, "KMNIST", companions=companions)
    message = str(error.value)
    assert f"{NAMES[0]} is present but its md5 is {md5sum(root / NAMES[0])}, expected {md5[NAMES[0]]}" in message
    assert f"{NAMES[1]} is missing" in message and "t10k-labels-idx1-ubyte.gz is missing" in message
    assert "t10k-images-idx3-ubyte.gz is present but is not a file" in message
    assert "data.md5=None" in message and "missing or corrupt" not in message
    assert f"by hand: {NAMES[1]} (md5 {md5[NAMES[1]]}); t10k-labels-idx1-ubyte.gz (md5 {'1' * 32})" in message
    assert NAMES[0] not in message.split("by hand:")[1]  # present files are not asked for again


def test_only_md5_differences_say_so_without_asking_to_place_files(mirror, tmp_path):
    source, md5 = mirror
    wrong = {name: "f" * 32 for name in md5}
    with pytest.raises(DataError) as error:
        ensure_files(source, wrong, [], False, "KMNIST")
    message = str(error.value)
    for name in NAMES:
        assert f"{name} is present but its md5 is {md5[name]}, expected {'f' * 32}" in message
    assert "by hand" not in message and "set data.md5=None to accept it" in message


def test_a_present_file_with_another_md5_is_downloaded_again_when_allowed(mirror, tmp_path):
    source, md5 = mirror
    root = tmp_path / "root"
    root.mkdir()
    (root / NAMES[0]).write_bytes(b"half a download")
    with http_server(source) as url:
        ensure_files(root, md5, [url], True, "KMNIST")
    assert {n: md5sum(root / n) for n in NAMES} == md5


def test_failed_mirrors_still_name_the_other_files_that_are_missing(mirror, tmp_path):
    with http_server(tmp_path) as url:
        pass  # closed: nothing listens there
    with pytest.raises(DataError) as error:
        ensure_files(tmp_path / "root", mirror[1], [url], True, "KMNIST", companions={"t10k-images-idx3-ubyte.gz": None})
    message = str(error.value)
    assert "Every mirror failed" in message and "t10k-images-idx3-ubyte.gz is missing" in message
    assert all(f"{name} is missing" in message for name in NAMES)
