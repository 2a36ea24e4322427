"""A stand-in for suanli's two run endpoints, for the connector contract: it serves stage items
by SHA-256 and takes PUT outputs, each only with the run's token. (The real endpoints are tested
against a real `suanli serve` in tests/integration and tests/security.)"""

from __future__ import annotations

import hashlib
import io
import secrets
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from suanli.connectors import StageItem


class StageServer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.blobs: dict[str, bytes] = {}
        self.outputs: dict[str, bytes] = {}
        self.token = "slr_" + secrets.token_hex(16)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {server.token}":
                    self.send_response(401)
                    self.end_headers()
                    return False
                return True

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                sha = self.path.rsplit("/", 1)[-1]
                data = server.blobs.get(sha)
                if data is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                if not self._authorised():
                    return
                size = int(self.headers.get("Content-Length") or 0)
                server.outputs[self.path.rsplit("/", 2)[-2]] = self.rfile.read(size)
                self.send_response(201)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, data: bytes, *, dest: str = "", unpack: bool = True,
            local: bool = False) -> StageItem:
        sha = hashlib.sha256(data).hexdigest()
        self.blobs[sha] = data
        path = self.folder / sha
        path.write_bytes(data)
        return StageItem(sha256=sha, size=len(data), dest=dest, unpack=unpack,
                         local_path=str(path) if local else None,
                         url=f"{self.url}/stage/{sha}")

    def outputs_url(self, run_key: str) -> str:
        return f"{self.url}/runs/{run_key}/outputs"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def tar_of(files: dict[str, bytes | str], *, modes: dict[str, int] | None = None) -> bytes:
    """A tar holding `files` (name -> content; a str content ending in '/' is a folder)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, str) and content.endswith("/"):
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
                continue
            data = content.encode() if isinstance(content, str) else content
            info.size = len(data)
            info.mode = (modes or {}).get(name, 0o644)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def names_in(tar_bytes: bytes) -> dict[str, bytes]:
    """The regular files of a tar and their contents."""
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for member in tar:
            if member.isfile():
                fh = tar.extractfile(member)
                assert fh is not None
                found[member.name] = fh.read()
            else:
                assert member.isdir(), f"{member.name}: only files and folders in outputs"
    return found
