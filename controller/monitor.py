"""``tomocycle monitor``: a local web page that follows an experiment live (docs/monitor.md).

A standard-library HTTP server (``ThreadingHTTPServer``) serves one page and its script from
``controller/monitor_static/`` and a few JSON endpoints that the page polls every 1.5 s:

``GET /api/snapshot?experiment=ID``
    Everything the page shows (see :class:`controller.monitor_data.MonitorData`).
``GET /api/experiments``
    The experiments of the data directory.
``GET /api/file?path=REL``
    An analysis image inside the data directory (PNG as is; ``.npz``/``.npy`` rendered to PNG).

Bound to 127.0.0.1 by default. Bound to any other address, every request must carry the
random ``token`` printed in the URL (``?token=...``), since the page has no other login.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import mimetypes
import secrets
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import numpy as np

from controller.images import png_bytes
from controller.monitor_data import MonitorData

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("monitor_static")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
_STATIC = {"/": "index.html", "/index.html": "index.html", "/app.js": "app.js", "/app.css": "app.css"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.1, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback and host in ("127.0.0.1", "::1")
    except ValueError:
        return False


def _array_file_png(path: Path) -> bytes:
    if path.suffix == ".npy":
        return png_bytes(np.load(path, allow_pickle=False))
    with np.load(path, allow_pickle=False) as npz:
        names = list(npz.files)
        name = next((n for n in ("slice", "image", "data") if n in names), names[0] if names else None)
        if name is None:
            raise ValueError(f"{path.name}: empty npz")
        return png_bytes(np.squeeze(npz[name]))


class MonitorServer(ThreadingHTTPServer):
    """The monitor's HTTP server.

    Parameters
    ----------
    data
        Where snapshots come from.
    host, port
        Address to bind (port 0: any free port).
    token
        Required ``token`` query parameter; generated when ``host`` is not loopback and None is given.
    experiment
        Experiment shown by default (the latest one if None).
    """

    daemon_threads = True

    def __init__(self, data: MonitorData, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 token: str | None = None, experiment: str | None = None) -> None:
        self.data = data
        self.token = token if token is not None else (None if is_loopback(host) else secrets.token_urlsafe(16))
        self.experiment = experiment
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        """The page's address, with the token and experiment when there are any."""
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        query = [f"token={quote(self.token)}"] if self.token else []
        if self.experiment:
            query.append(f"experiment={quote(self.experiment)}")
        return f"http://{shown}:{port}/" + (f"?{'&'.join(query)}" if query else "")

    def start_background(self) -> threading.Thread:
        """Serve on a daemon thread; ``shutdown()`` stops it."""
        thread = threading.Thread(target=self.serve_forever, name="tomocycle-monitor", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    server: MonitorServer
    server_version = "tomocycle-monitor"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if self.server.token is not None and not secrets.compare_digest(query.get("token", ""), self.server.token):
            self._send(HTTPStatus.FORBIDDEN, b"token required: use the URL tomocycle monitor printed\n", "text/plain")
            return
        try:
            if parts.path in _STATIC:
                name = _STATIC[parts.path]
                self._send(HTTPStatus.OK, (STATIC_DIR / name).read_bytes(),
                           mimetypes.guess_type(name)[0] or "application/octet-stream")
            elif parts.path == "/api/snapshot":
                snap = self.server.data.snapshot(query.get("experiment") or self.server.experiment)
                self._json(snap)
            elif parts.path == "/api/experiments":
                self._json(self.server.data.experiments())
            elif parts.path == "/api/file":
                self._file(query.get("path", ""))
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as err:  # one bad read must not take the page down
            log.exception("monitor request %s failed", self.path)
            self._json({"error": f"{type(err).__name__}: {err}"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    def _file(self, rel: str) -> None:
        root = self.server.data.data_dir
        path = (root / rel).resolve()
        if not rel or not path.is_relative_to(root / "analysis") or not path.is_file():
            self._send(HTTPStatus.NOT_FOUND, b"no such analysis file\n", "text/plain")
            return
        if path.suffix in (".npz", ".npy"):
            self._send(HTTPStatus.OK, _array_file_png(path), "image/png")
        elif path.suffix in (".png", ".jpg", ".jpeg", ".svg"):
            self._send(HTTPStatus.OK, path.read_bytes(), mimetypes.guess_type(path.name)[0] or "image/png")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not an image\n", "text/plain")

    def _json(self, value: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(value, allow_nan=False).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)


def serve(data_dir: str | Path, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          experiment: str | None = None) -> MonitorServer:
    """A monitor server for ``data_dir``, bound and ready (call ``serve_forever`` or ``start_background``).

    Raises
    ------
    OSError
        If the address cannot be bound (port in use, say).
    """
    return MonitorServer(MonitorData(data_dir), host=host, port=port, experiment=experiment)
