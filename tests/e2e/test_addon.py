"""The ways it ships: the add-on's start (the Supervisor's answers turned into a service
config, against a stand-in for the Supervisor's HTTP API that answers its documented JSON),
the add-on's version, and the container and systemd files."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import tomllib
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from recovery_coach.cli.addon import Supervisor, SupervisorError, service_config, write_addon_config
from recovery_coach.contract.config import load_config, parse_config

from tests.support.mosquitto import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "a-supervisor-token"

# The Supervisor's documented answers (developers.home-assistant.io, "Supervisor API":
# /services/mqtt is what the Mosquitto add-on registered, supervisor/services/modules/
# mqtt.py's schema; /info carries the system's time zone).
MQTT_SERVICE = {
    "addon": "core_mosquitto",
    "host": "core-mosquitto",
    "port": 1883,
    "ssl": False,
    "protocol": "3.1.1",
    "username": "addons",
    "password": "Eech1aiG",
}
INFO = {
    "supervisor": "2026.11.2",
    "homeassistant": "2026.11.4",
    "hassos": "16.3",
    "docker": "28.0.4",
    "hostname": "homeassistant",
    "operating_system": "Home Assistant OS 16.3",
    "machine": "raspberrypi5-64",
    "arch": "aarch64",
    "supported_arch": ["aarch64"],
    "supported": True,
    "channel": "stable",
    "logging": "info",
    "state": "running",
    "timezone": "Europe/Berlin",
}


class StandIn:
    """What the stand-in answers, and the requests it saw."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, Any]] = {
            "/services/mqtt": (200, {"result": "ok", "data": MQTT_SERVICE}),
            "/info": (200, {"result": "ok", "data": INFO}),
        }
        self.auth: list[str | None] = []


@pytest.fixture
def supervisor() -> Iterator[tuple[Supervisor, StandIn]]:
    stand_in = StandIn()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            stand_in.auth.append(self.headers.get("Authorization"))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                code, body = 401, {"result": "error", "message": "Unauthorized"}
            else:
                code, body = stand_in.answers.get(
                    self.path, (404, {"result": "error", "message": "not found"})
                )
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        yield Supervisor(url, TOKEN, timeout=5), stand_in
    finally:
        server.shutdown()
        server.server_close()


def test_the_supervisors_broker_and_zone_become_the_service_config(
    supervisor: tuple[Supervisor, StandIn], tmp_path: Path
) -> None:
    sup, stand_in = supervisor
    options = tmp_path / "options.json"
    options.write_text(json.dumps({"log_level": "debug", "base_topic": "coach"}))
    out = write_addon_config(sup, options, tmp_path / "config.json", data_dir=tmp_path)

    cfg = load_config(out)  # the service's own validation
    assert cfg.broker is not None
    assert (cfg.broker.host, cfg.broker.port, cfg.broker.username) == (
        "core-mosquitto",
        1883,
        "addons",
    )
    assert cfg.broker.protocol == "3.1.1"
    assert cfg.broker.tls is None
    assert cfg.timezone == "Europe/Berlin"
    assert cfg.log_level == "DEBUG"
    assert cfg.base_topic == "coach"
    assert cfg.store == f"sqlite:///{tmp_path / 'recovery_coach.db'}"
    assert cfg.users == {}
    # The password is in a file of its own that only the add-on reads, not in the config.
    secret = tmp_path / "mqtt_password"
    assert cfg.broker.password_file == secret
    assert secret.read_text() == MQTT_SERVICE["password"]
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert "Eech1aiG" not in out.read_text()
    assert stand_in.auth == [f"Bearer {TOKEN}", f"Bearer {TOKEN}"]


def test_tls_and_a_broker_without_an_account(tmp_path: Path) -> None:
    mqtt = {"host": "broker.lan", "port": 8883, "ssl": True, "protocol": "3.1.1"}
    data, password = service_config(mqtt, {}, {}, tmp_path)
    cfg = parse_config(data)
    assert password is None
    assert cfg.broker is not None
    assert cfg.broker.tls is not None
    assert not cfg.broker.tls.insecure  # the certificate is verified
    assert cfg.broker.username is None
    assert cfg.broker.password_file is None
    assert (cfg.timezone, cfg.log_level, cfg.base_topic) == ("UTC", "INFO", "recovery_coach")


def test_defaults_when_the_options_file_is_absent(
    supervisor: tuple[Supervisor, StandIn], tmp_path: Path
) -> None:
    sup, _ = supervisor
    out = write_addon_config(sup, tmp_path / "none.json", tmp_path / "c.json", data_dir=tmp_path)
    assert load_config(out).log_level == "INFO"


@pytest.mark.parametrize(
    ("path", "answer", "says"),
    [
        # The Mosquitto add-on is not installed: the Supervisor has no MQTT service.
        (
            "/services/mqtt",
            (400, {"result": "error", "message": "No MQTT service"}),
            "HTTP 400: No MQTT",
        ),
        ("/services/mqtt", (200, {"result": "ok", "data": {}}), "Mosquitto broker add-on"),
        ("/info", (200, "not an object"), "refused"),
    ],
)
def test_a_supervisor_that_cannot_help_is_said_in_one_line(
    supervisor: tuple[Supervisor, StandIn],
    tmp_path: Path,
    path: str,
    answer: tuple[int, Any],
    says: str,
) -> None:
    sup, stand_in = supervisor
    stand_in.answers[path] = answer
    with pytest.raises(SupervisorError, match=says):
        write_addon_config(sup, tmp_path / "o.json", tmp_path / "c.json", data_dir=tmp_path)
    assert not (tmp_path / "c.json").exists()


def test_a_wrong_token_is_refused(supervisor: tuple[Supervisor, StandIn], tmp_path: Path) -> None:
    sup, _ = supervisor
    wrong = Supervisor(sup.url, "not-the-token", timeout=5)
    with pytest.raises(SupervisorError, match="401"):
        write_addon_config(wrong, tmp_path / "o.json", tmp_path / "c.json", data_dir=tmp_path)


def test_the_command_reads_the_token_and_url_from_the_environment(
    supervisor: tuple[Supervisor, StandIn], tmp_path: Path
) -> None:
    sup, _ = supervisor
    env = {**os.environ, "SUPERVISOR_URL": sup.url, "SUPERVISOR_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "recovery_coach.cli", "addon-config"]
    args = ["--options", str(tmp_path / "o.json"), "--out", str(tmp_path / "c.json")]
    args += ["--data", str(tmp_path)]
    done = subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert load_config(tmp_path / "c.json").timezone == "Europe/Berlin"
    no_token = {k: v for k, v in env.items() if k != "SUPERVISOR_TOKEN"}
    done = subprocess.run([*cmd, *args], env=no_token, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "SUPERVISOR_TOKEN" in done.stderr


def test_the_add_on_and_the_package_have_one_version() -> None:
    package = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    addon = yaml.safe_load((ROOT / "addon" / "config.yaml").read_text())
    assert addon["version"] == package
    changelog = (ROOT / "addon" / "CHANGELOG.md").read_text()
    assert f"## {package}" in changelog


# The Supervisor's own check of `watchdog` (supervisor/apps/validate.py, RE_WATCHDOG).
SUPERVISOR_WATCHDOG = re.compile(
    r"^(?:https?|\[PROTO:\w+\]|tcp):\/\/\[HOST\]:(\[PORT:\d+\]|\d+).*$"
)


def test_the_add_on_declares_what_the_supervisor_needs() -> None:
    addon = yaml.safe_load((ROOT / "addon" / "config.yaml").read_text())
    assert addon["slug"] == "recovery_coach"
    assert set(addon["arch"]) == {"aarch64", "amd64"}
    assert addon["init"] is False
    assert addon["services"] == ["mqtt:need"]
    assert addon["homeassistant"] == json.loads((ROOT / "hacs.json").read_text())["homeassistant"]
    # Nothing a user must fill in: every option has a default.
    assert set(addon["schema"]) == set(addon["options"])
    for translation in (ROOT / "addon" / "translations").glob("*.yaml"):
        configuration = yaml.safe_load(translation.read_text())["configuration"]
        assert set(configuration) == set(addon["options"]), translation.name
        assert all(v["name"] for v in configuration.values()), translation.name
    repo = yaml.safe_load((ROOT / "repository.yaml").read_text())
    assert repo["name"]
    assert repo["url"]
    for name in ("DOCS.md", "icon.png", "logo.png", "Dockerfile", "run.sh"):
        assert (ROOT / "addon" / name).is_file(), name


def test_the_add_on_builds_from_its_folder_on_the_current_app_builder() -> None:
    """Supervisor 2026.04+: the base image named in FROM (no build.yaml, no BUILD_FROM);
    what the Dockerfile copies is in the add-on's folder (its whole build context); its
    version's default is the add-on's."""
    addon = yaml.safe_load((ROOT / "addon" / "config.yaml").read_text())
    docker = (ROOT / "addon" / "Dockerfile").read_text()
    assert not (ROOT / "addon" / "build.yaml").exists()
    assert "BUILD_FROM" not in docker
    froms = re.findall(r"^FROM (\S+)", docker, re.M)
    assert froms == ["ghcr.io/home-assistant/base-python:3.13-alpine3.22"]
    assert f"ARG BUILD_VERSION={addon['version']}" in docker
    for copied in re.findall(r"^COPY (\S+?)/? ", docker, re.M):
        assert (ROOT / "addon" / copied).exists(), copied


def test_the_add_on_is_watched_through_the_services_healthz() -> None:
    addon = yaml.safe_load((ROOT / "addon" / "config.yaml").read_text())
    assert SUPERVISOR_WATCHDOG.fullmatch(addon["watchdog"])
    port = re.search(r"\[PORT:(\d+)\]", addon["watchdog"])
    assert port is not None
    from recovery_coach.cli.addon import WEB_PORT

    assert int(port.group(1)) == WEB_PORT
    assert addon["watchdog"].endswith("/healthz")
    assert addon["backup"] == "cold"  # a live SQLite store is not copied mid-write
    assert addon["backup_exclude"] == ["cache/**"]
    assert "XDG_CACHE_HOME=/data/cache" in (ROOT / "addon" / "Dockerfile").read_text()


def test_the_add_ons_wheel_is_this_repositorys_service() -> None:
    """The add-on installs the wheel in its folder: it must be the service as it is here,
    under the constraints every other install uses. When this fails: scripts/addon-wheel."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    wheel = ROOT / "addon" / "wheels" / f"recovery_coach-{version}-py3-none-any.whl"
    assert wheel.is_file(), "run scripts/addon-wheel"
    source = ROOT / "service" / "recovery_coach"
    expected = {
        p.relative_to(source.parent).as_posix(): p.read_bytes()
        for p in source.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    with zipfile.ZipFile(wheel) as z:
        packaged = {n: z.read(n) for n in z.namelist() if n.startswith("recovery_coach/")}
    assert packaged.keys() == expected.keys(), "run scripts/addon-wheel"
    stale = sorted(n for n in expected if packaged[n] != expected[n])
    assert stale == [], f"run scripts/addon-wheel: {stale[:5]} changed"
    constraints = (ROOT / "addon" / "wheels" / "constraints.txt").read_text()
    assert constraints == (ROOT / "constraints.txt").read_text(), "run scripts/addon-wheel"


def test_the_container_config_is_valid() -> None:
    cfg = load_config(ROOT / "config" / "docker" / "config.yaml")
    assert cfg.broker is not None
    assert cfg.broker.host == "mosquitto"
    assert cfg.store.startswith("sqlite:////data/")
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert set(compose["services"]) == {"mosquitto", "recovery-coach"}
    mounted = {v.split(":")[0] for v in compose["services"]["mosquitto"]["volumes"]}
    for path in mounted - {"mosquitto-data"}:
        assert (ROOT / path).resolve().is_relative_to(ROOT / "config" / "mosquitto"), path


def test_the_compose_brokers_config_starts_a_real_mosquitto(tmp_path: Path) -> None:
    """mosquitto itself checks the file (an unknown option or a missing file fails it):
    it must come up and take a connection."""
    conf = (ROOT / "config" / "mosquitto" / "mosquitto-compose.conf").read_text()
    (tmp_path / "passwd").write_text("")
    (tmp_path / "acl").write_text((ROOT / "config" / "mosquitto" / "acl").read_text())
    conf = conf.replace("/etc/mosquitto/passwd", str(tmp_path / "passwd"))
    conf = conf.replace("/etc/mosquitto/acl", str(tmp_path / "acl"))
    conf = conf.replace("/var/lib/mosquitto/", f"{tmp_path}/")
    port = free_port()
    assert "listener 1883\n" in conf
    conf = conf.replace("listener 1883\n", f"listener {port} 127.0.0.1\n")
    if os.getuid() == 0:
        conf += "\nuser root\n"  # else mosquitto drops to its own user, who cannot read here
    (tmp_path / "m.conf").write_text(conf)
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(tmp_path / "m.conf")], stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        up = False
        while not up and proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                up = True
            time.sleep(0.05)  # polling a port that is not open yet
        assert proc.poll() is None, proc.communicate()[1]
        assert up
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    """systemd's own check of the unit, with its ExecStart pointed at this machine's
    recovery-coach (the unit names the documented /opt/recovery-coach venv)."""
    exe = shutil.which("recovery-coach") or str(Path(sys.executable).parent / "recovery-coach")
    assert Path(exe).is_file()
    unit = (ROOT / "config" / "systemd" / "recovery-coach.service").read_text()
    assert "/opt/recovery-coach/bin/recovery-coach" in unit
    for key in ("DynamicUser=yes", "StateDirectory=recovery-coach", "LoadCredential=mqtt_password"):
        assert key in unit, key
    (tmp_path / "recovery-coach.service").write_text(
        unit.replace("/opt/recovery-coach/bin/recovery-coach", exe)
    )
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "recovery-coach.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "recovery-coach.service" not in done.stderr, done.stderr
