"""A real Home Assistant, a real mosquitto and the service, end to end, as a person sets
it up: onboarding and every config flow through HA's own REST and websocket APIs, a person
added with a Garmin-shaped activity source, the workout's nudges on MQTT and a notify call
recorded, an HA restart with nothing lost or doubled, and the example dashboard rendered
in headless Chromium to docs/dashboard.png.

Run by `scripts/real-ha` (its own command: two HA installs and two HA starts each take
minutes, too slow for CI). Usage: python acceptance/real_ha.py --service-cmd PATH
[--screenshot docs/dashboard.png]; run with the Python of a venv holding that HA release.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
BASE = "recovery_coach"
USER = "alex"
GARMIN = f"sensor.{USER}_garmin_last_activity"
PASSWORD = "acceptance-pass-1"


def log(msg: str) -> None:
    print(f"[real-ha {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"FAILED: timed out after {timeout:.0f} s waiting for {what}")


class Recorder:
    """Every message on the base topic, with its arrival time."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"acc-{uuid.uuid4().hex[:6]}"
        )
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{BASE}/#", qos=1)
        self.client.loop_start()

    def nudges(self, source_event_id: str) -> list[dict[str, Any]]:
        out = []
        for topic, payload in list(self.messages):
            if topic == f"{BASE}/{USER}/nudge" and payload:
                n = json.loads(payload)
                if n.get("source_event_id") == source_event_id:
                    out.append(n)
        return out

    def diagnostics(self) -> dict[str, Any]:
        found = [p for t, p in self.messages if t == f"{BASE}/diagnostics" and p]
        return json.loads(found[-1]) if found else {}

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class HomeAssistant:
    def __init__(self, config_dir: Path, port: int, log_path: Path) -> None:
        self.config_dir = config_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.tokens: dict[str, Any] = {}

    def start(self) -> None:
        # HA releases after 2025.4 declare Python >= 3.13.2 and run on 3.13.0: skip only the
        # version check. --skip-pip: the venv holds every requirement (scripts/real-ha).
        code = (
            "import sys, homeassistant.__main__ as m; m.validate_python = lambda: None; "
            f"sys.argv = ['hass', '-c', {str(self.config_dir)!r}, '--skip-pip']; "
            "raise SystemExit(m.main())"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            # Not the clone: its own custom_components/ package would shadow the config
            # directory's (and hide the recording phone's integration).
            cwd=self.config_dir,
        )
        wait_for("Home Assistant's HTTP server", self._up, 240, 1.0)
        log(f"Home Assistant is up on {self.url}")

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise SystemExit(f"FAILED: Home Assistant exited:\n{self.log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/manifest.json", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(120)

    def request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read().decode()
        except urllib.error.HTTPError as exc:
            why = exc.read().decode()[:500]
            raise SystemExit(f"FAILED: {method} {path}: {exc.code} {why}") from None
        return json.loads(text) if text else None

    def onboard(self) -> None:
        client_id = f"{self.url}/"
        answer = self.request(
            "POST",
            "/api/onboarding/users",
            {
                "client_id": client_id,
                "name": "Acceptance",
                "username": "acceptance",
                "password": PASSWORD,
                "language": "en",
            },
            auth=False,
        )
        self._token(answer["auth_code"])
        # The remaining steps, or the frontend sends every page to onboarding. The location
        # step starts flows for HA's default integrations (weather, radio, speech) whose
        # requirements this venv does not hold: HA logs that they failed to load, no more.
        self.request("POST", "/api/onboarding/core_config", {})
        self.request("POST", "/api/onboarding/analytics", {})
        self.request(
            "POST",
            "/api/onboarding/integration",
            {"client_id": client_id, "redirect_uri": client_id},
        )
        log("onboarded user 'acceptance'")

    def login(self) -> None:
        """A token again after a restart (the refresh token would do; a login is simpler)."""
        client_id = f"{self.url}/"
        flow = self.request(
            "POST",
            "/auth/login_flow",
            {"client_id": client_id, "handler": ["homeassistant", None], "redirect_uri": client_id},
            auth=False,
        )
        done = self.request(
            "POST",
            f"/auth/login_flow/{flow['flow_id']}",
            {"username": "acceptance", "password": PASSWORD, "client_id": client_id},
            auth=False,
        )
        self._token(done["result"])

    def _token(self, code: str) -> None:
        """The session's tokens for an authorization code (onboarding's, or a login's)."""
        form = urllib.parse.urlencode(
            {"grant_type": "authorization_code", "code": code, "client_id": f"{self.url}/"}
        ).encode()
        with urllib.request.urlopen(f"{self.url}/auth/token", data=form, timeout=30) as r:
            self.tokens = json.loads(r.read())
        self.token = self.tokens["access_token"]

    def flow(
        self, start_path: str, start: dict[str, Any], answers: dict[str, dict[str, Any]]
    ) -> Any:
        """Run a config (or subentry) flow through the REST API, answering each step."""
        result = self.request("POST", start_path, start)
        for _ in range(10):
            if result["type"] in ("create_entry", "abort"):
                return result
            if result["type"] == "menu":
                step = answers.get(result["step_id"], {})
                result = self.request("POST", f"{start_path}/{result['flow_id']}", step)
                continue
            if result.get("errors"):
                raise SystemExit(
                    f"FAILED: {start_path} step {result['step_id']}: {result['errors']}"
                )
            step = answers.get(result["step_id"])
            if step is None:
                raise SystemExit(f"FAILED: no answer for step {result['step_id']} of {start_path}")
            result = self.request("POST", f"{start_path}/{result['flow_id']}", step)
        raise SystemExit(f"FAILED: {start_path} did not finish")

    async def ws(self, *commands: dict[str, Any]) -> list[Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{self.url}/api/websocket") as ws,
        ):
            await ws.receive_json()
            await ws.send_json({"type": "auth", "access_token": self.token})
            assert (await ws.receive_json())["type"] == "auth_ok"
            out = []
            for i, command in enumerate(commands, 1):
                await ws.send_json({"id": i, **command})
                while True:
                    msg = await ws.receive_json()
                    if msg.get("id") == i and msg["type"] == "result":
                        if not msg["success"]:
                            raise SystemExit(f"FAILED: {command['type']}: {msg['error']}")
                        out.append(msg["result"])
                        break
            return out

    def entry(self, domain: str) -> dict[str, Any]:
        entries = self.request("GET", "/api/config/config_entries/entry")
        return next(e for e in entries if e["domain"] == domain)


def daytime_wake(zone: str = "Europe/Berlin") -> str:
    """A wake time 8 hours ago in HA's zone: whenever the run starts, the workout it logs
    falls in the person's day (not in their sleep window, where no cooldown is sent)."""
    now = datetime.now(ZoneInfo(zone)) - timedelta(hours=8)
    return f"{now.hour:02d}:{now.minute // 15 * 15:02d}:00"


def garmin_activity(activity_id: int, ended: datetime) -> dict[str, Any]:
    """Garmin's activity, as the Garmin Connect integration's last_activity sensor passes it."""
    start_gmt = ended - timedelta(minutes=50)
    return {
        "activityId": activity_id,
        "activityName": "Leg day",
        "startTimeLocal": (start_gmt + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"),
        "startTimeGMT": start_gmt.strftime("%Y-%m-%d %H:%M:%S"),
        "activityType": {"typeId": 13, "typeKey": "strength_training", "parentTypeId": 29},
        "duration": 3000.0,
        "averageHR": 118.0,
        "maxHR": 162.0,
        "calories": 380.0,
        "friendly_name": "Alex Garmin last activity",
    }


def write_config(config_dir: Path, port: int, calls: Path) -> None:
    (config_dir / "custom_components").mkdir(parents=True)
    os.symlink(
        ROOT / "custom_components" / "recovery_coach",
        config_dir / "custom_components" / "recovery_coach",
    )
    # The phone: a notify action of the test's own that records every call.
    rec = config_dir / "custom_components" / "recorder_notify"
    rec.mkdir()
    (rec / "manifest.json").write_text(
        json.dumps(
            {
                "domain": "recorder_notify",
                "name": "Recorder notify",
                "version": "1.0",
                "codeowners": [],
                "documentation": "https://example.invalid",
                "iot_class": "local_push",
                "requirements": [],
            }
        )
    )
    (rec / "__init__.py").write_text(
        '"""notify.mobile_app_recorder: appends each call to a file (the acceptance phone)."""\n'
        "import json\n\n"
        "async def async_setup(hass, config):\n"
        "    async def record(call):\n"
        f"        with open({str(calls)!r}, 'a') as f:\n"
        "            f.write(json.dumps(dict(call.data), default=str) + '\\n')\n"
        "    hass.services.async_register('notify', 'mobile_app_recorder', record)\n"
        "    return True\n"
    )
    dashboard = (ROOT / "config" / "homeassistant" / "dashboard.yaml").read_text()
    (config_dir / "dashboard.yaml").write_text(dashboard)
    cfg = {
        "homeassistant": {
            "name": "Recovery Coach acceptance",
            "time_zone": "Europe/Berlin",
            "country": "DE",
            "unit_system": "metric",
            "auth_providers": [{"type": "homeassistant"}],
        },
        "http": {"server_host": "127.0.0.1", "server_port": port},
        "frontend": {},
        "api": {},
        "config": {},
        "onboarding": {},
        "person": {},
        "zone": {},
        # The dashboard's zone-2 history card reads the recorder, as in a default install.
        "recorder": {"db_url": f"sqlite:///{config_dir / 'home-assistant_v2.db'}"},
        "history": {},
        "lovelace": {
            "dashboards": {
                "recovery-coach": {
                    "mode": "yaml",
                    "title": "Recovery",
                    "filename": "dashboard.yaml",
                    "show_in_sidebar": True,
                    "icon": "mdi:heart-pulse",
                }
            }
        },
        "recorder_notify": {},
        "logger": {"default": "info", "logs": {"custom_components.recovery_coach": "debug"}},
    }
    (config_dir / "configuration.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


# Walks the frontend's shadow roots: how many cards of the dashboard have rendered.
_CARDS_JS = """
(() => {
  let n = 0;
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.tagName.startsWith('HUI-') && el.tagName.endsWith('-CARD')) n++;
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(document);
  return n;
})()
"""


async def _cdp_screenshot(ha: HomeAssistant, debug_port: int, out: Path) -> None:
    """Through Chrome's DevTools protocol: the session's tokens in the frontend's storage
    (as after a login), the dashboard opened, its cards waited for, a screenshot taken."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{debug_port}/json/list") as r:
            page = next(t for t in await r.json() if t["type"] == "page")
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            ids = iter(range(1, 10_000))

            async def call(method: str, **params: Any) -> Any:
                i = next(ids)
                await ws.send_json({"id": i, "method": method, "params": params})
                while True:
                    msg = await ws.receive_json()
                    if msg.get("id") == i:
                        return msg.get("result", {})

            await call("Page.enable")
            await call(
                "Emulation.setDeviceMetricsOverride",
                width=1280,
                height=1100,
                deviceScaleFactor=1,
                mobile=False,
            )
            await call("Page.navigate", url=f"{ha.url}/manifest.json")
            tokens = {
                **ha.tokens,
                "hassUrl": ha.url,
                "clientId": f"{ha.url}/",
                "expires": int(time.time() * 1000) + 1_800_000,
            }
            await call(
                "Runtime.evaluate",
                expression=f"localStorage.setItem('hassTokens', {json.dumps(json.dumps(tokens))})",
            )
            await call("Page.navigate", url=f"{ha.url}/recovery-coach/recovery")
            deadline = time.monotonic() + 60
            cards = 0
            while time.monotonic() < deadline:
                res = await call("Runtime.evaluate", expression=_CARDS_JS, returnByValue=True)
                cards = int(res.get("result", {}).get("value") or 0)
                if cards >= 6:
                    break
                await asyncio.sleep(0.5)  # polling the page for its cards
            if cards < 6:
                href = await call(
                    "Runtime.evaluate", expression="location.href", returnByValue=True
                )
                shot = await call("Page.captureScreenshot", format="png")
                (out.parent / "failed-dashboard.png").write_bytes(base64.b64decode(shot["data"]))
                raise SystemExit(
                    f"FAILED: the dashboard rendered {cards} card(s) at "
                    f"{href.get('result', {}).get('value')} (failed-dashboard.png)"
                )
            await asyncio.sleep(2)  # let the last card's own fetch (history) settle
            shot = await call("Page.captureScreenshot", format="png")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(base64.b64decode(shot["data"]))


def screenshot(ha: HomeAssistant, out: Path, work: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("FAILED: chromium is not installed (scripts/real-ha installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={work / 'chromium-profile'}",
            f"--remote-debugging-port={port}",
            "--hide-scrollbars",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(work / "chromium.log").open("wb"),
        # The browser's clock in the home's zone: the frontend shows times in it.
        env={**os.environ, "TZ": "Europe/Berlin"},
    )
    try:
        wait_for("Chromium's DevTools", lambda: _accepts(port), 30)
        asyncio.run(_cdp_screenshot(ha, port, out))
    finally:
        proc.terminate()
        proc.wait(30)
    log(f"dashboard screenshot: {out} ({out.stat().st_size} bytes)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--service-cmd", required=True, help="the recovery-coach executable")
    ap.add_argument("--screenshot", type=Path, help="write the dashboard screenshot here")
    args = ap.parse_args()
    import homeassistant.const as hc

    log(f"Home Assistant {hc.__version__} on Python {sys.version.split()[0]}")
    work = Path(tempfile.mkdtemp(prefix="rc-real-ha-"))
    procs: list[subprocess.Popen[bytes]] = []
    ha: HomeAssistant | None = None
    rec: Recorder | None = None
    try:
        # mosquitto, on a port of its own
        mport = free_port()
        (work / "mosquitto.conf").write_text(
            f"listener {mport} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            + ("user root\n" if os.getuid() == 0 else "")
        )
        procs.append(
            subprocess.Popen(
                ["mosquitto", "-c", str(work / "mosquitto.conf")],
                stderr=(work / "mosquitto.log").open("wb"),
            )
        )
        wait_for("mosquitto", lambda: _accepts(mport), 20)
        rec = Recorder(mport)
        # the service, with no users at all
        svc_cfg = {
            "broker": {"host": "127.0.0.1", "port": mport, "protocol": "3.1.1"},
            "store": f"sqlite:///{work / 'coach.db'}",
            "log_level": "DEBUG",
            "users": {},
        }
        (work / "service.yaml").write_text(yaml.safe_dump(svc_cfg))
        procs.append(
            subprocess.Popen(
                [args.service_cmd, "run", "--config", str(work / "service.yaml")],
                stdout=(work / "service.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
        wait_for("the service online", lambda: (f"{BASE}/status", b"online") in rec.messages, 30)
        log("mosquitto and the service are up (the service has no users)")

        calls = work / "notify-calls.jsonl"
        hport = free_port()
        write_config(work / "ha", hport, calls)
        ha = HomeAssistant(work / "ha", hport, work / "ha.log")
        ha.start()
        ha.onboard()
        ha.flow(
            "/api/config/config_entries/flow",
            {"handler": "mqtt"},
            {
                "broker": {"broker": "127.0.0.1", "port": mport},
                "user": {"broker": "127.0.0.1", "port": mport},
            },
        )
        log("MQTT set up through its config flow")
        result = ha.flow(
            "/api/config/config_entries/flow",
            {"handler": "recovery_coach"},
            {"user": {"base_topic": BASE}, "discovery_confirm": {}},
        )
        entry_id = result["result"]["entry_id"]
        log(f"Recovery Coach set up through its config flow (entry {entry_id})")
        [person] = asyncio.run(ha.ws({"type": "person/create", "name": "Alex"}))
        log(f"person created: person.{person['id']}")
        old = datetime.now(UTC) - timedelta(days=2)
        ha.request(
            "POST",
            f"/api/states/{GARMIN}",
            {"state": "Old run", "attributes": garmin_activity(1000, old)},
        )
        ha.flow(
            "/api/config/config_entries/subentries/flow",
            {"handler": [entry_id, "person"]},
            {
                "user": {
                    "person": f"person.{person['id']}",
                    "weight_kg": 82,
                    "goal": "hypertrophy",
                    "running_experience": "intermediate",
                    "wake_time": daytime_wake(),
                    "sleep_hours": 8,
                    "protein_g_per_kg": 1.6,
                    "activity_sources": [GARMIN],
                    "max_heart_rate": 185,
                    "phones": ["mobile_app_recorder"],
                }
            },
        )
        wait_for(
            "the profile on MQTT",
            lambda: any(t == f"{BASE}/{USER}/profile" for t, _ in rec.messages),
            20,
        )
        wait_for(
            "the service's state for alex",
            lambda: any(t == f"{BASE}/{USER}/state" for t, _ in rec.messages),
            20,
        )
        log("person added in HA: the service set alex up from the profile")
        # The entry follows the person once its diagnostics name them.
        wait_for(
            "the entry following alex",
            lambda: (
                USER
                in ha.request("GET", f"/api/diagnostics/config_entry/{entry_id}")["data"][
                    "followed_users"
                ]
            ),
            30,
        )

        # A workout done now, after the source was added (history is not replayed); Garmin's
        # times have whole seconds, so the next second is surely after the adding.
        ended = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        ha.request(
            "POST",
            f"/api/states/{GARMIN}",
            {"state": "Leg day", "attributes": garmin_activity(2026120201, ended)},
        )
        nudges = wait_for("the workout's nudges", lambda: rec.nudges("garmin:2026120201"), 30)
        kinds = sorted({n["kind"] for n in nudges})
        log(f"nudges for garmin:2026120201: {kinds}")
        assert "cooldown_start" in kinds, kinds
        wait_for(
            "a notify call for the nudge", lambda: calls.exists() and calls.read_text().strip(), 30
        )
        sent_before = len(rec.nudges("garmin:2026120201"))
        notified_before = len(calls.read_text().splitlines())
        log(f"notify.mobile_app_recorder called {notified_before} time(s)")

        ha.stop()
        log("Home Assistant stopped; starting it again")
        dups_before = rec.diagnostics().get("duplicates_dropped", 0)
        ha.start()
        ha.login()
        wait_for(
            "the Recovery Coach entry loaded",
            lambda: ha.entry("recovery_coach")["state"] == "loaded",
            60,
        )
        # Garmin's integration sets the same activity again at its first poll after a start.
        ha.request(
            "POST",
            f"/api/states/{GARMIN}",
            {"state": "Leg day", "attributes": garmin_activity(2026120201, ended)},
        )
        wait_for(
            "the service to drop the repeated activity",
            lambda: rec.diagnostics().get("duplicates_dropped", 0) > dups_before,
            30,
        )
        assert len(rec.nudges("garmin:2026120201")) == sent_before, "a nudge was sent twice"
        assert len(calls.read_text().splitlines()) == notified_before, "a phone was notified twice"
        log("after the restart: the activity was sent again, dropped as a repeat; nothing doubled")

        if args.screenshot is not None:
            screenshot(ha, args.screenshot.resolve(), work)
        log(f"PASSED on Home Assistant {hc.__version__}")
        return 0
    finally:
        if rec is not None:
            rec.stop()
        if ha is not None:
            ha.stop()
        for p in reversed(procs):
            p.terminate()
            p.wait(30)
        log(f"logs in {work}")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 1):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    import urllib.error
    import urllib.parse

    raise SystemExit(main())
