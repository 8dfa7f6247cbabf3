"""The service's /healthz (web.py): what the add-on's watchdog and a container health check
read. Against the live service as a child process, and the server on its own."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from recovery_coach.contract.config import WebConfig
from recovery_coach.runtime.web import WebServer

from tests.support.mosquitto import MosquittoBroker, free_port
from tests.support.service_process import ServiceProcess, user_config


def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_live_service_answers_healthz(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    port = free_port()
    svc = ServiceProcess(
        tmp_path,
        port=mosquitto.port,
        base="rc_web",
        users={"alex": user_config()},
        extra={"web": {"enabled": True, "port": port}},
    )
    try:
        svc.start().wait_connected()
        svc.wait_log("web: listening on 127.0.0.1")
        status, body = get(port, "/healthz")
        assert status == 200
        assert body["ok"] is True
        assert body["connected"] is True
        assert body["store_error"] is None
        assert "alex" not in json.dumps(body)  # nothing about anyone
        assert get(port, "/users")[0] == 404
        svc.stop()
        assert "Traceback" not in svc.log()
    finally:
        svc.close()


@pytest.mark.parametrize(("ok", "status"), [(True, 200), (False, 503)])
def test_healthz_says_unhealthy_with_503(ok: bool, status: int) -> None:
    server = WebServer(WebConfig(enabled=True, port=free_port()), lambda: {"ok": ok, "why": "x"})
    server.start()
    try:
        assert get(server.port, "/healthz") == (status, {"ok": ok, "why": "x"})
    finally:
        server.stop()


def test_a_failing_report_is_a_503_not_a_crash() -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("store gone")

    server = WebServer(WebConfig(enabled=True, port=free_port()), broken)
    server.start()
    try:
        status, body = get(server.port, "/healthz")
        assert status == 503
        assert "store gone" in body["error"]
    finally:
        server.stop()
