"""The peers the service is measured against, in the same run, through the same mosquitto,
with the same events: a bare paho automation (bench/peer_paho.py) and a Node-RED 4.1 flow
(node-red from npm, headless, TCP_NODELAY on its broker connection, a delay node for the
scheduled nudge). Neither is durable: a restart loses what they hold.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NODE_RED_VERSION = "4.1.8"
NODE_RED_DIR = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    / "recovery-coach"
    / f"node-red-{NODE_RED_VERSION}"
)

# Node's sockets leave Nagle's algorithm on; mqtt.js does not turn it off. Preloaded into
# Node-RED, this sets TCP_NODELAY on every socket before it connects.
NODELAY_JS = """
const net = require("net");
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  this.setNoDelay(true);
  return connect.apply(this, args);
};
"""

FUNCTION_JS = """
const user = msg.topic.split("/").slice(-3)[0];
const e = msg.payload;
const now = new Date();
const topic = BASE + "/" + user + "/nudge";
const mk = (kind, due) => ({topic, payload: JSON.stringify({
  nudge_id: kind + "-" + user + "-" + e.event_id, user, rule: "R1", kind,
  source_event_id: e.event_id, due_at: due.toISOString(), title: kind})});
return [mk("cooldown_start", now), mk("cooldown_done", new Date(now.getTime() + 300000))];
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_until_quiet(pid: int, cpu0: float, *, step: float = 0.25, most: float = 20.0) -> float:
    """CPU a process spent since `cpu0`, once it has settled (less than 4% of a core over
    `step`): what a burst cost, the work it left for later included (a service that defers
    its states past the last first nudge still pays for them)."""
    until = time.monotonic() + most
    last = cpu_seconds(pid)
    while time.monotonic() < until:
        time.sleep(step)
        now = cpu_seconds(pid)
        if now - last < 0.04 * step:
            return now - cpu0
        last = now
    return last - cpu0


class Peer:
    name = ""

    def __init__(self, workdir: Path, port: int, base: str) -> None:
        self.dir = workdir / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.base = base
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def start(self) -> Peer:
        cmd, env = self.command()
        log = (self.dir / "peer.log").open("ab")
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **env}
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class PahoPeer(Peer):
    name = "paho"

    def command(self) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, "-m", "bench.peer_paho", str(self.port), self.base], {}


class NodeRedPeer(Peer):
    name = "node-red"

    @staticmethod
    def install() -> Path:
        """node-red from npm into a cache outside the clone (once; about 15 s)."""
        red = NODE_RED_DIR / "node_modules" / "node-red" / "red.js"
        if not red.exists():
            NODE_RED_DIR.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
                 f"node-red@{NODE_RED_VERSION}"],
                cwd=NODE_RED_DIR, check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        return red

    def flow(self) -> list[dict[str, Any]]:
        tab = "peer"
        return [
            {"id": tab, "type": "tab", "label": "recovery coach peer"},
            {"id": "broker", "type": "mqtt-broker", "broker": "127.0.0.1", "port": self.port,
             "clientid": f"peer-node-red-{self.port}", "protocolVersion": 4,
             "keepalive": 60, "cleansession": True, "autoConnect": True},
            {"id": "in", "type": "mqtt in", "z": tab, "topic": f"{self.base}/+/workout/completed",
             "qos": "1", "datatype": "json", "broker": "broker", "wires": [["decide"]]},
            {"id": "decide", "type": "function", "z": tab, "outputs": 2,
             "func": f"const BASE = {json.dumps(self.base)};\n{FUNCTION_JS}",
             "wires": [["out"], ["later"]]},
            {"id": "later", "type": "delay", "z": tab, "pauseType": "delay", "timeout": "5",
             "timeoutUnits": "minutes", "wires": [["out"]]},
            {"id": "out", "type": "mqtt out", "z": tab, "qos": "1", "retain": "false",
             "broker": "broker", "wires": []},
        ]  # fmt: skip

    def command(self) -> tuple[list[str], dict[str, str]]:
        red = self.install()
        (self.dir / "flows.json").write_text(json.dumps(self.flow()))
        (self.dir / "nodelay.js").write_text(NODELAY_JS)
        settings = {
            "uiPort": 0,
            "httpAdminRoot": False,
            "httpNodeRoot": False,
            "flowFile": "flows.json",
            "userDir": str(self.dir),
            "logging": {"console": {"level": "warn"}},
        }
        (self.dir / "settings.js").write_text(f"module.exports = {json.dumps(settings)};\n")
        env = {"NODE_OPTIONS": f"--require {self.dir / 'nodelay.js'}"}
        return ["node", str(red), "--settings", str(self.dir / "settings.js")], env


def wait_ready(lc: Any, peer: Peer, base: str, timeout: float = 60.0) -> None:
    """Until the peer answers a workout event (it has connected and subscribed)."""
    deadline = time.time() + timeout
    i = 0
    while time.time() < deadline:
        eid = f"ready-{peer.name}-{i}"
        lc.publish(f"{base}/ready/workout/completed", {"event_id": eid})
        if lc.wait(lambda eid=eid: eid in lc.first, 1.0):
            return
        i += 1
    raise RuntimeError(f"{peer.name} did not answer within {timeout:.0f} s")
