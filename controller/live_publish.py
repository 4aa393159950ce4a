"""Publishing an experiment's documents on loopback: bluesky's 0MQ Publisher and Proxy.

The RunEngine's process gets a :class:`bluesky.callbacks.zmq.Publisher` (a non-blocking PUB
socket: a slow or absent subscriber never slows acquisition, and 0MQ drops what it cannot
deliver). A :class:`bluesky.callbacks.zmq.Proxy` forwards from the publishers' port to the
subscribers' port; it runs in its own process (``python -m controller.live_publish``) so it
outlives neither more nor less than the operator wants and costs the RunEngine nothing.

Documents carry references to frames (StreamResource/StreamDatum naming the HDF5 file and the
frame indices), never frames: the frame files and the catalog are the source of truth, and a
consumer reads from them what it needs or missed (:mod:`controller.live_consumer`).

Both ports are bound to 127.0.0.1 unless another host is asked for explicitly.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
#: bluesky's customary proxy ports: publishers send to IN, subscribers listen on OUT.
DEFAULT_IN_PORT = 5577
DEFAULT_OUT_PORT = 5578
_READY = "tomocycle-proxy-ready"


class LivePublishError(RuntimeError):
    """The proxy could not start (port taken by something that is not a proxy, ...)."""


@dataclass
class ProxyProcess:
    """A running proxy subprocess; :meth:`close` ends it."""

    process: subprocess.Popen
    host: str
    in_port: int
    out_port: int

    @property
    def in_address(self) -> str:
        """Where publishers send."""
        return f"{self.host}:{self.in_port}"

    @property
    def out_address(self) -> str:
        """Where consumers subscribe."""
        return f"{self.host}:{self.out_port}"

    def close(self, timeout: float = 5.0) -> None:
        """Stop the proxy process (terminate, then kill)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> "ProxyProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def start_proxy(host: str = DEFAULT_HOST, in_port: int = DEFAULT_IN_PORT, out_port: int = DEFAULT_OUT_PORT,
                *, timeout: float = 20.0) -> ProxyProcess:
    """Start a 0MQ proxy in a subprocess and wait until both its sockets are bound.

    Raises
    ------
    LivePublishError
        If the proxy exits before it is ready (a port in use, say) or does not start in time.
    """
    cmd = [sys.executable, "-m", "controller.live_publish", "--host", host, "--in-port", str(in_port),
           "--out-port", str(out_port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    lines = []
    assert proc.stdout is not None
    # The child prints one line once Proxy() has bound its sockets; anything else is an error.
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.strip() == _READY:
            return ProxyProcess(proc, host, in_port, out_port)
        lines.append(line.rstrip())
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    raise LivePublishError(f"0MQ proxy on {host}:{in_port}->{out_port} did not start: "
                           + (lines[-1] if lines else "no output"))


def ensure_proxy(host: str = DEFAULT_HOST, in_port: int = DEFAULT_IN_PORT,
                 out_port: int = DEFAULT_OUT_PORT) -> ProxyProcess | None:
    """Start a proxy, or return None when one already holds the ports (a facility's long-lived proxy).

    Raises
    ------
    LivePublishError
        If it fails for any other reason.
    """
    try:
        return start_proxy(host, in_port, out_port)
    except LivePublishError as err:
        if "in use" in str(err):
            log.info("a 0MQ proxy already listens on %s:%d; publishing to it", host, in_port)
            return None
        raise


def attach_publisher(engine: Any, address: str) -> Any:
    """Subscribe a 0MQ Publisher sending to ``address`` (host:port) to a RunEngine; return it.

    Its ``close()`` ends the socket.
    """
    from bluesky.callbacks.zmq import Publisher

    publisher = Publisher(address)
    engine.subscribe(publisher)
    return publisher


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """``host:port``, ``:port`` or ``host`` -> (host, port); the host defaults to 127.0.0.1.

    Raises
    ------
    ValueError
        If the port is not a number in 1..65535.
    """
    host, _, port = text.rpartition(":") if ":" in text else (text, ":", "")
    host = host or DEFAULT_HOST
    try:
        p = int(port) if port else default_port
    except ValueError:
        raise ValueError(f"address {text!r}: the port must be a number") from None
    if not 0 < p < 65536:
        raise ValueError(f"address {text!r}: port {p} outside 1..65535")
    return host, p


def _serve(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controller.live_publish",
                                     description="bluesky 0MQ proxy for tomocycle's live documents")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--in-port", type=int, default=DEFAULT_IN_PORT)
    parser.add_argument("--out-port", type=int, default=DEFAULT_OUT_PORT)
    args = parser.parse_args(argv)
    from bluesky.callbacks.zmq import Proxy

    proxy = Proxy(in_address=f"{args.host}:{args.in_port}", out_address=f"{args.host}:{args.out_port}")
    print(_READY, flush=True)
    proxy.start()
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
