"""Downloading MNIST: against a local HTTP server on 127.0.0.1 that serves the embedded
files; every other connection is refused, so no test reaches the outside network."""

from __future__ import annotations

import errno
import functools
import hashlib
import http.server
import ipaddress
import shutil
import socket
import sys
import threading
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from lenet5 import datasets
from lenet5.datasets import data_home, download_mnist, load_mnist

NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


# ---------------------------------------------------------------- no outside network


class OutsideNetwork(OSError):
    pass


def _is_loopback(host) -> bool:
    if host in ("localhost", b"localhost"):
        return True
    try:
        return ipaddress.ip_address(host if isinstance(host, str) else host.decode()).is_loopback
    except (ValueError, UnicodeDecodeError, AttributeError):
        return False


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Refuses name look-ups and connections to anything but the loopback addresses,
    and records what was refused."""
    refused: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host):
            refused.append(str(host))
            raise OutsideNetwork(f"blocked by the test: look-up of {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(host):
            refused.append(str(host))
            raise OutsideNetwork(f"blocked by the test: connection to {host}")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                "ALL_PROXY"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    return refused


# ---------------------------------------------------------------- local server


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; records request paths; can cut or stall chosen files."""

    def log_message(self, format, *args):  # quiet
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        name = self.path.rsplit("/", 1)[-1]
        behaviour = self.server.behaviour.get(name)
        if behaviour == "truncate":
            data = (Path(self.directory) / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if behaviour == "stall":
            time.sleep(1.5)
            return
        super().do_GET()


class Server:
    def __init__(self, folder: Path):
        handler = functools.partial(Handler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.requests = []
        self.httpd.behaviour = {}
        self.folder = folder
        host, port = self.httpd.server_address[:2]
        self.url = f"http://{host}:{port}/mnist/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.closed = False
        self.thread.start()

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests

    @property
    def behaviour(self) -> dict[str, str]:
        return self.httpd.behaviour

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def embedded_folder() -> Path:
    return Path(str(resources.files("lenet5") / "data" / "mnist-5k"))


@pytest.fixture
def served(tmp_path):
    """A server on 127.0.0.1 serving copies of the embedded files under /mnist/."""
    root = tmp_path / "www"
    (root / "mnist").mkdir(parents=True)
    for name in NAMES:
        shutil.copyfile(embedded_folder() / name, root / "mnist" / name)
    server = Server(root)
    yield server
    server.close()


@pytest.fixture(scope="module")
def digests():
    """sha256 of the served files (the embedded ones) in place of the published ones."""
    return {
        name: hashlib.sha256((embedded_folder() / name).read_bytes()).hexdigest() for name in NAMES
    }


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- tests


def test_download_verifies_and_loads(served, digests, tmp_path, mnist, loopback_only):
    cache = tmp_path / "cache" / "mnist"
    (x, y), (xt, yt) = load_mnist(
        cache, download=True, mirrors=[served.url], sha256=digests, progress=False
    )
    (ex, ey), (ext, eyt) = mnist
    np.testing.assert_array_equal(x, ex)
    np.testing.assert_array_equal(y, ey)
    np.testing.assert_array_equal(xt, ext)
    np.testing.assert_array_equal(yt, eyt)
    assert listing(cache) == sorted(NAMES)  # no temporary file left
    assert sorted(served.requests) == sorted(f"/mnist/{n}" for n in NAMES)
    for name in NAMES:
        assert (cache / name).read_bytes() == (embedded_folder() / name).read_bytes()
    assert loopback_only == []


def test_cache_is_reused_without_requests(served, digests, tmp_path):
    cache = tmp_path / "cache"
    assert download_mnist(cache, mirrors=[served.url], sha256=digests, progress=False) == cache
    served.requests.clear()
    served.close()  # nothing can be downloaded any more
    (x, _), _ = load_mnist(cache, download=True, mirrors=[served.url], sha256=digests)
    assert x.shape == (4000, 28, 28)
    assert served.requests == []


def test_only_missing_files_are_fetched(served, digests, tmp_path):
    cache = tmp_path / "cache"
    download_mnist(cache, mirrors=[served.url], sha256=digests, progress=False)
    (cache / "t10k-labels-idx1-ubyte.gz").unlink()
    served.requests.clear()
    download_mnist(cache, mirrors=[served.url], sha256=digests, progress=False)
    assert served.requests == ["/mnist/t10k-labels-idx1-ubyte.gz"]


def test_default_folder_is_lenet5_data(served, digests, tmp_path, monkeypatch):
    monkeypatch.setenv("LENET5_DATA", str(tmp_path / "data"))
    (_, y), _ = load_mnist(download=True, mirrors=[served.url], sha256=digests, progress=False)
    assert y.shape == (4000,)
    assert listing(tmp_path / "data" / "mnist") == sorted(NAMES)


def test_corrupted_download_is_rejected_and_not_kept(served, digests, tmp_path):
    corrupt(served.folder / "mnist" / "t10k-images-idx3-ubyte.gz")
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz.*sha256") as info:
        load_mnist(cache, download=True, mirrors=[served.url], sha256=digests, progress=False)
    assert digests["t10k-images-idx3-ubyte.gz"] in str(info.value)
    assert "t10k-images-idx3-ubyte.gz" not in listing(cache)
    assert not [n for n in listing(cache) if n.endswith(".part")]
    # The good files are kept; a later good mirror completes the folder.
    assert "train-images-idx3-ubyte.gz" in listing(cache)


def test_next_mirror_is_tried(served, digests, tmp_path):
    corrupt(served.folder / "mnist" / "train-labels-idx1-ubyte.gz")
    good = tmp_path / "www" / "good"
    good.mkdir()
    for name in NAMES:
        shutil.copyfile(embedded_folder() / name, good / name)
    missing = served.url.replace("/mnist/", "/absent/")
    mirrors = [missing, served.url, served.url.replace("/mnist/", "/good/")]
    cache = tmp_path / "cache"
    (_, y), _ = load_mnist(cache, download=True, mirrors=mirrors, sha256=digests, progress=False)
    assert y.shape == (4000,)
    assert listing(cache) == sorted(NAMES)
    labels = [r for r in served.requests if r.endswith("train-labels-idx1-ubyte.gz")]
    assert labels == [
        "/absent/train-labels-idx1-ubyte.gz",  # 404
        "/mnist/train-labels-idx1-ubyte.gz",  # corrupted
        "/good/train-labels-idx1-ubyte.gz",
    ]


def test_unreachable_file_is_an_oserror(served, digests, tmp_path):
    (served.folder / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    cache = tmp_path / "cache"
    with pytest.raises(OSError, match=r"could not download t10k-labels-idx1-ubyte\.gz.*404"):
        download_mnist(cache, mirrors=[served.url], sha256=digests, progress=False)
    assert "t10k-labels-idx1-ubyte.gz" not in listing(cache)


def test_cut_connection_leaves_nothing(served, digests, tmp_path):
    served.behaviour["train-images-idx3-ubyte.gz"] = "truncate"
    cache = tmp_path / "cache"
    with pytest.raises(OSError, match=r"train-images-idx3-ubyte\.gz"):
        download_mnist(cache, mirrors=[served.url], sha256=digests, progress=False)
    assert "train-images-idx3-ubyte.gz" not in listing(cache)
    assert not [n for n in listing(cache) if n.startswith(".")]


def test_silent_server_times_out(served, digests, tmp_path):
    served.behaviour["train-images-idx3-ubyte.gz"] = "stall"
    start = time.monotonic()
    with pytest.raises(OSError, match="timed out"):
        download_mnist(
            tmp_path / "c", mirrors=[served.url], sha256=digests, progress=False, timeout=0.3
        )
    assert time.monotonic() - start < 1.4


def test_wrong_file_in_cache_is_not_overwritten(served, digests, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "train-labels-idx1-ubyte.gz").write_bytes(b"something else")
    with pytest.raises(ValueError, match="delete it to download it again"):
        load_mnist(cache, download=True, mirrors=[served.url], sha256=digests, progress=False)
    assert (cache / "train-labels-idx1-ubyte.gz").read_bytes() == b"something else"


def test_progress_bar_on_stderr(served, digests, tmp_path, capsys):
    download_mnist(tmp_path / "c", mirrors=[served.url], sha256=digests, progress=True)
    captured = capsys.readouterr()
    assert "train-images-idx3-ubyte.gz" in captured.err
    assert "B/s" in captured.err or "kB" in captured.err or "B " in captured.err
    assert captured.out == ""


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mirrors": ["ftp://127.0.0.1/mnist/"]}, "not an http or https URL"),
        ({"mirrors": []}, "at least one URL"),
        ({"sha256": {"train-images-idx3-ubyte.gz": "0" * 64}}, "exactly the file names"),
        ({"sha256": dict.fromkeys(NAMES, "xyz")}, "64 hexadecimal digits"),
        ({"sha256": dict.fromkeys(NAMES, "g" * 64)}, "64 hexadecimal digits"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        download_mnist(tmp_path, progress=False, **kwargs)


def test_mirrors_without_download_is_an_error(served, digests):
    with pytest.raises(ValueError, match="only with download=True"):
        load_mnist(mirrors=[served.url])
    with pytest.raises(ValueError, match="only with download=True"):
        load_mnist(sha256=digests)
    assert served.requests == []


def test_the_default_mirrors_are_the_only_hosts_tried(tmp_path, loopback_only):
    """Without mirrors= the public mirrors are asked, in order (here refused by the test)."""
    with pytest.raises(OSError, match="could not download train-images") as info:
        load_mnist(tmp_path / "c", download=True, progress=False)
    hosts = [m.split("/")[2] for m in datasets.MNIST_MIRRORS]
    assert loopback_only == hosts  # one refused look-up per mirror, then it gave up
    for mirror in datasets.MNIST_MIRRORS:
        assert mirror in str(info.value)
    assert listing(tmp_path / "c") == []


def test_published_digests_are_well_formed():
    assert sorted(datasets.MNIST_SHA256) == sorted(NAMES)
    for digest in datasets.MNIST_SHA256.values():
        assert len(digest) == 64
        int(digest, 16)
    assert all(m.startswith("https://") for m in datasets.MNIST_MIRRORS)
    assert datasets.MNIST_SIZES["train-images-idx3-ubyte.gz"] == 9_912_422


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="XDG layout")
def test_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("LENET5_DATA", str(tmp_path / "x"))
    assert data_home() == tmp_path / "x"
    monkeypatch.delenv("LENET5_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_home() == tmp_path / "xdg" / "lenet5"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_home() == tmp_path / "home" / ".cache" / "lenet5"


def test_leftovers_of_killed_downloads_are_removed(served, digests, tmp_path):
    """Temporary files a killed download left beside a file it was fetching are removed
    when that file is downloaded: the native writer's (lock free) and the ``.part`` files
    of earlier versions; files that only look alike are kept."""
    cache = tmp_path / "cache"
    cache.mkdir()
    name = "train-images-idx3-ubyte.gz"
    leftovers = [
        f".{name}.lenet5-save-999999-0.tmp",  # the writer's, its process gone
        f".{name}.0123456789ab.part",  # an earlier version's streamed download
        f".t10k-labels-idx1-ubyte.gz.{'f' * 12}.part",
    ]
    kept = [
        f".{name}.notes.part",
        f".{name}.0123456789ab.part.bak",
        f".other.gz.{'0' * 12}.part",
        "readme.txt",
    ]
    for leftover in leftovers + kept:
        (cache / leftover).write_bytes(b"partial")
    download_mnist(cache, mirrors=[served.url], sha256=digests, progress=False)
    assert listing(cache) == sorted(list(NAMES) + kept)
    for leftover in kept:
        assert (cache / leftover).read_bytes() == b"partial"


def test_interrupted_download_leaves_nothing(served, digests, tmp_path, monkeypatch):
    """Ctrl-C in the middle of a download: nothing is on disk for that file."""
    cache = tmp_path / "cache"
    real_read = datasets.http.client.HTTPResponse.read
    calls = []

    def read(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_read(self, *args)

    monkeypatch.setattr(datasets.http.client.HTTPResponse, "read", read)
    monkeypatch.setattr(datasets, "_CHUNK", 1024)
    with pytest.raises(KeyboardInterrupt):
        download_mnist(cache, mirrors=[served.url], sha256=digests, progress=False)
    assert listing(cache) == []


def test_a_failed_write_is_the_folders_error_not_the_mirrors(served, digests, tmp_path):
    """A download that cannot be written raises the OSError of the write (errno and
    filename of the file), without trying the other mirrors, and leaves nothing."""
    cache = tmp_path / "cache"
    cache.mkdir()
    name = "train-labels-idx1-ubyte.gz"
    (cache / name).mkdir()  # a folder where the file should go
    (cache / name / "inside").write_bytes(b"x")
    mirrors = [served.url, served.url.replace("/mnist/", "/other/")]
    with pytest.raises(IsADirectoryError, match="cannot write downloaded file") as info:
        download_mnist(cache, mirrors=mirrors, sha256=digests, progress=False)
    assert info.value.errno == errno.EISDIR
    assert info.value.filename == str(cache / name)
    assert [r for r in served.requests if r.endswith(name)] == [f"/mnist/{name}"]
    assert not [n for n in listing(cache) if n.startswith(".")]
