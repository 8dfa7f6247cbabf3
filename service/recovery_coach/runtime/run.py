"""`recovery-coach run`: the broker to use, the store made ready, then the service of the
whole (under the store's instance lease, store/lease.py) or, sharded, this instance of
several (cluster.py), until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from recovery_coach import __version__
from recovery_coach.contract.config import BrokerConfig, Config
from recovery_coach.contract.shards import HEARTBEAT_S, LEASE_S, default_instance
from recovery_coach.core.backoff import Backoff
from recovery_coach.mqtt.embedded_broker import (
    EmbeddedBroker,
    PortTakenError,
    port_free,
    speaks_mqtt,
)
from recovery_coach.mqtt.link import credentials_problem
from recovery_coach.runtime.log_format import setup_logging
from recovery_coach.runtime.service import Service
from recovery_coach.runtime.web import WebServer
from recovery_coach.store import make_engine
from recovery_coach.store.check import shown, store_problem
from recovery_coach.store.lease import InstanceLease
from recovery_coach.store.reshard import ShardCountInUseError

log = logging.getLogger(__name__)

SWITCH_INTERVAL = 0.0005  # seconds; Python's default is 0.005
SHARDED_SWITCH_INTERVAL = 0.005  # seconds: Python's default


def choose_broker(cfg: Config) -> tuple[BrokerConfig, EmbeddedBroker | None]:
    """The configured broker, or the embedded one (or the broker already on its port)."""
    if cfg.broker is not None:
        return cfg.broker, None
    host, port = cfg.embedded_broker.host, cfg.embedded_broker.port
    broker = cfg.broker_to_use()
    if port_free(host, port):
        embedded = EmbeddedBroker(host, port)
        embedded.start()
        return broker, embedded
    if speaks_mqtt(host, port):
        log.warning(
            "port %s on %s is taken by an MQTT broker that answers: using it instead of the "
            "embedded broker",
            port,
            host,
        )
        return broker, None
    raise PortTakenError(
        f"port {port} on {host} is in use by something that is not an MQTT broker: set "
        "embedded_broker.port to a free port, or add a `broker` section for your own broker"
    )


def _store_ready(url: str, stop: threading.Event) -> bool:
    """Whether the store can be used: a corrupt file or bad URL is said in one line (False);
    an unreachable server is retried with back-off (1 s doubling to 30 s) until it answers
    or the service is stopped."""
    backoff = Backoff()
    while True:
        problem = store_problem(url)
        if problem is None:
            return True
        if not problem.retry:
            log.error("store %s: %s", shown(url), problem.reason)
            return False
        delay = backoff.next()
        log.warning("store %s: %s; retrying in %.0f s", shown(url), problem.reason, delay)
        if stop.wait(delay):
            return False


def run(cfg: Config, config_path: Path | None = None) -> int:
    """Run until SIGTERM or SIGINT; exit code for the command line."""
    setup_logging(cfg.log_level, cfg.log_format)
    # The worker and APScheduler's threads hand the GIL to each other around every socket
    # and SQLite call; with the default 5 ms switch interval a thread back from I/O can wait
    # that long for another to let go (bench: p50 about 1 ms lower with 0.5 ms, measured
    # when paho still had a thread of its own).
    # Sharded, an instance has a worker thread per shard: busy together, they handed the GIL
    # to each other every 0.5 ms (bench --instances 3: 1.9 ms of CPU per event; 1.2 ms
    # with Python's default).
    sys.setswitchinterval(SWITCH_INTERVAL if cfg.shards == 1 else SHARDED_SWITCH_INTERVAL)
    if cfg.broker is not None and (login := credentials_problem(cfg.broker)) is not None:
        log.error("%s", login)
        return 2
    try:
        broker, embedded = choose_broker(cfg)
    except PortTakenError as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:
        log.error("cannot start the embedded broker: %s", exc)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if not _store_ready(cfg.store, stop):
        return _stopped(embedded, 0 if stop.is_set() else 2)
    if cfg.shards > 1:
        from recovery_coach.runtime.cluster import (
            Instance,  # sharded: this process is one instance of several
        )

        name = cfg.instance or default_instance()
        log.info(
            "recovery coach %s: instance %s of a service of %d shard(s), %d user(s), "
            "base topic %s, broker %s:%s, config %s",
            __version__,
            name,
            cfg.shards,
            len(cfg.users),
            cfg.base_topic,
            broker.host,
            broker.port,
            config_path,
        )
        try:
            instance = Instance(cfg, broker, name)
        except ShardCountInUseError as exc:
            log.error("%s", exc)
            return _stopped(embedded, 2)
        instance.run(stop)
        return _stopped(embedded, 0)
    lease = InstanceLease(make_engine(cfg.store, pool_size=1), cfg.instance or default_instance())
    serving: list[Service] = []  # the service while this instance holds the lease
    web = None
    if cfg.web.enabled:
        web = WebServer(cfg.web, lambda: serving[0].health_report() if serving else STANDBY)
        web.start()
    try:
        code = _serve_while_leased(cfg, broker, config_path, lease, stop, serving)
    finally:
        if web is not None:
            web.stop()
        lease.release()
        lease.engine.dispose()
    return _stopped(embedded, code)


STANDBY: dict[str, Any] = {"ok": True, "worker": "standby", "version": __version__}


def _serve_while_leased(
    cfg: Config,
    broker: BrokerConfig,
    config_path: Path | None,
    lease: InstanceLease,
    stop: threading.Event,
    serving: list[Service],
) -> int:
    """Serve the store while this instance holds its lease; stand by while another does.
    Taken over (this one stalled past the lease), it stops serving and stands by again."""
    while not stop.is_set():
        if lease.wait_for_turn(stop) is None:
            return 0
        try:
            service = Service(cfg, broker, lease=lease)
        except ShardCountInUseError as exc:
            log.error("%s", exc)
            return 2
        log.info(
            "recovery coach %s: %d user(s), base topic %s, broker %s:%s, config %s",
            __version__,
            len(service.profiles),
            cfg.base_topic,
            broker.host,
            broker.port,
            config_path,
        )
        service.start()
        serving.append(service)
        lost = False
        while not stop.wait(HEARTBEAT_S):
            if lease.renew() is False or not service.running():
                lost = True
                log.error(
                    "another instance took this store over (this one was stalled, or its "
                    "lease could not be renewed for %.0f s): it stops serving and stands by",
                    LEASE_S,
                )
                break
        serving.clear()
        service.stop(offline=not lost)  # taken over: the status is the new holder's
    return 0


def _stopped(embedded: EmbeddedBroker | None, code: int) -> int:
    if embedded is not None:
        embedded.stop()
    return code
