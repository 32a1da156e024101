"""A real HTTP server on 127.0.0.1 that serves a data folder, for the benchmark-download tests.

It counts the requests for each path (so a test can prove that a second fetch downloads
nothing) and misbehaves on purpose, per path, the ways a hostile or broken server does:
`404`, `tamper` (one byte changed, same length), `extra` (more bytes than the file has),
`truncate` (announces the full length, sends half, hangs up), `short` (no length, half the
bytes) and `stall` (headers, then silence until the server stops, 10 s at most).
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

MODES = ("404", "tamper", "extra", "truncate", "short", "stall")


class DataServer:
    def __init__(self, root: Path, modes: dict[str, str] | None = None):
        self.root = root.resolve()
        self.modes = dict(modes or {})  # relative path -> one of MODES
        self.requests: Counter[str] = Counter()
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def body(self, relative: str) -> bytes | None:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path.read_bytes()

    def __enter__(self) -> DataServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                relative = unquote(self.path.split("?")[0].lstrip("/"))
                owner.requests[relative] += 1
                mode, data = owner.modes.get(relative), owner.body(relative)
                if data is None or mode == "404":
                    self.send_error(404, "Not Found")
                    return
                if mode == "tamper":
                    middle = len(data) // 2
                    data = data[:middle] + bytes([data[middle] ^ 0x20]) + data[middle + 1:]
                elif mode == "extra":
                    data = data + b"\n" * 4096
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if mode != "short":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if mode == "stall":
                    owner.stopping.wait(10)
                    return
                self.wfile.write(data[:len(data) // 2] if mode in ("truncate", "short") else data)

            def log_message(self, *args) -> None:  # quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def no_shared_data(monkeypatch, tmp_path: Path, url: str | None = None) -> Path:
    """The environment of a user whose clone has no ../shared beside it: no DSCODER_DATA, the checkout's
    data hidden (DSCODER_CHECKOUT_DATA=0), a fresh HOME and XDG cache, online, downloads from `url` when
    given (DSCODER_DATA_URL). Returns the data cache folder that `dscoder.tasks.fetch` will use."""
    for name in ("DSCODER_DATA", "DSCODER_CACHE", "DSCODER_OFFLINE", "HF_HUB_OFFLINE", "DSCODER_DATA_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("DSCODER_CHECKOUT_DATA", "0")
    for name in ("no_proxy", "NO_PROXY"):  # a proxy set for the machine must not see loopback requests
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    if url:
        monkeypatch.setenv("DSCODER_DATA_URL", url)
    return tmp_path / "xdg-cache" / "dscoder" / "data"


def leftovers(folder: Path) -> list[Path]:
    """Temporary download files left anywhere under `folder`."""
    return sorted(p for p in folder.rglob("*") if p.name.endswith(".part")) if folder.exists() else []
