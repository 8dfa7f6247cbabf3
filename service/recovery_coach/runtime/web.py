"""The service's small HTTP side (the `web` section of the config; off by default).

`GET /healthz` answers 200 while the service can do its job, 503 with the reason when a
restart could help (the worker thread died, the store or the scheduler keeps failing): the
Home Assistant add-on's Supervisor watchdog and a container's health check read it. A broker
outage is reported but not unhealthy: restarting the service would not bring the broker
back. The body is JSON and carries no health data of any person.

A stdlib server in one thread that sleeps in `select()` until a request comes (no polling:
the box that runs Home Assistant pays for every wake-up); `stop()` wakes it with a
connection of its own.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from recovery_coach.contract.config import WebConfig

log = logging.getLogger(__name__)

HealthReport = Callable[[], dict[str, Any]]  # must hold "ok": bool


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/healthz":
            self._send(404, {"error": "not found: this service answers /healthz"})
            return
        try:
            report = self.server.report()
        except Exception as exc:  # the report itself failing is unhealthy
            report = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        self._send(200 if report.get("ok") else 503, report)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("web: %s", format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    report: HealthReport


class WebServer:
    def __init__(self, cfg: WebConfig, report: HealthReport) -> None:
        self.cfg = cfg
        self._server = _Server((cfg.host, cfg.port), _Handler)
        self._server.report = report
        self._server.timeout = None  # handle_request() sleeps until a request comes
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="web", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("web: listening on %s:%s (GET /healthz)", self.cfg.host, self.port)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            self._server.handle_request()

    def stop(self) -> None:
        self._stopping.set()
        host = "127.0.0.1" if self.cfg.host in ("0.0.0.0", "") else self.cfg.host
        try:  # wake handle_request() from its select()
            with socket.create_connection((host, self.port), timeout=1):
                pass
        except OSError:
            pass
        self._thread.join(2)
        self._server.server_close()
