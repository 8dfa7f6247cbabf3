"""`recovery-coach addon-config`: the Home Assistant add-on's service config, from the
Supervisor's answers and the add-on's options.

At each start the add-on asks the Supervisor (http://supervisor, the token in
SUPERVISOR_TOKEN) for its MQTT service (`GET /services/mqtt`: host, port, ssl, protocol,
username, password of the broker add-on) and the system's time zone (`GET /info`), reads
its options (/data/options.json: log level, base topic), and writes a config whose store
is under /data. The password goes to a file of its own (mode 0600), never into the config.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUPERVISOR_URL = "http://supervisor"
WEB_PORT = 8099  # config.yaml's watchdog and ingress_port
DATA = Path("/data")


class SupervisorError(Exception):
    """The Supervisor did not answer as documented (no MQTT service, no token, ...)."""


@dataclass(frozen=True)
class Supervisor:
    """The two Supervisor API calls the add-on needs."""

    url: str
    token: str
    timeout: float = 10.0

    def get(self, path: str) -> dict[str, Any]:
        req = urllib.request.Request(
            f"{self.url.rstrip('/')}{path}", headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:  # the Supervisor's own error JSON says why
            raise SupervisorError(f"GET {path}: HTTP {exc.code}: {_message(exc)}") from None
        except OSError as exc:  # unreachable, timeouts
            raise SupervisorError(f"GET {path}: {exc}") from None
        except ValueError:
            raise SupervisorError(f"GET {path}: the answer is not JSON") from None
        if not isinstance(body, dict) or body.get("result") != "ok":
            why = body.get("message") if isinstance(body, dict) else None
            raise SupervisorError(f"GET {path}: {why or 'the Supervisor refused'}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise SupervisorError(f"GET {path}: no data in the answer")
        return data


def _message(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read().decode("utf-8"))
    except (OSError, ValueError):
        return str(exc.reason)
    return str(body.get("message") or exc.reason) if isinstance(body, dict) else str(exc.reason)


def service_config(
    mqtt: dict[str, Any], info: dict[str, Any], options: dict[str, Any], data_dir: Path
) -> tuple[dict[str, Any], str | None]:
    """The service config for these answers, and the broker password to store apart."""
    if not mqtt.get("host"):
        raise SupervisorError(
            "the Supervisor has no MQTT service: install and start the Mosquitto broker add-on"
        )
    broker: dict[str, Any] = {
        "host": str(mqtt["host"]),
        "port": int(mqtt.get("port") or 1883),
        # The Supervisor's MQTT service speaks 3.1 or 3.1.1 (its schema); the Mosquitto
        # add-on also speaks 5, which we prefer, but only 3.1.1 is promised.
        "protocol": "3.1.1",
    }
    password = mqtt.get("password") or None
    if mqtt.get("username"):
        broker["username"] = str(mqtt["username"])
    if password is not None:
        broker["password_file"] = str(data_dir / "mqtt_password")
    if mqtt.get("ssl"):
        # The broker add-on's certificate is the system's (Let's Encrypt or the user's);
        # the system's CAs check it.
        broker["tls"] = {}
    level = str(options.get("log_level") or "info").upper()
    cfg: dict[str, Any] = {
        "broker": broker,
        "store": f"sqlite:///{data_dir / 'recovery_coach.db'}",
        "timezone": str(info.get("timezone") or "UTC"),
        "log_level": level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO",
        "base_topic": str(options.get("base_topic") or "recovery_coach"),
        # /healthz for the Supervisor's watchdog (config.yaml), on the add-on's own network.
        "web": {"enabled": True, "host": "0.0.0.0", "port": WEB_PORT},
        "users": {},
    }
    return cfg, password


def write_addon_config(
    supervisor: Supervisor, options_path: Path, out: Path, data_dir: Path = DATA
) -> Path:
    """Ask the Supervisor, write the config (and the password file); returns the config."""
    try:
        options = json.loads(options_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        options = {}
    except (OSError, ValueError) as exc:
        raise SupervisorError(f"cannot read the add-on options {options_path}: {exc}") from None
    cfg, password = service_config(
        supervisor.get("/services/mqtt"), supervisor.get("/info"), options, data_dir
    )
    if password is not None:
        secret = data_dir / "mqtt_password"
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(password)
        os.chmod(secret, 0o600)  # an older file keeps its mode through O_CREAT
    out.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    return out


def from_environment() -> Supervisor:
    token = os.environ.get("SUPERVISOR_TOKEN")
    if not token:
        raise SupervisorError("SUPERVISOR_TOKEN is not set: this command runs inside the add-on")
    return Supervisor(os.environ.get("SUPERVISOR_URL", SUPERVISOR_URL), token)
