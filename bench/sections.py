"""The benchmark's sections: floor, peers, latency, flood, throughput, punctuality, scale.
Each returns its figures; nothing here asserts a time."""

from __future__ import annotations

import contextlib
import json
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from recovery_coach.contract.config import RateLimitConfig

from bench.harness import (
    BASE,
    HOST,
    ROOT,
    Got,
    LoadClient,
    Service,
    Store,
    log,
    midday_zone,
    ms,
    nodelay,
    pct,
    running,
    store_rows,
    workout,
)
from bench.peers import (
    NodeRedPeer,
    PahoPeer,
    Peer,
    cpu_seconds,
    cpu_until_quiet,
    wait_ready,
)

# ------------------------------------------------------------------ 1. floor


def bench_floor(port: int, n_latency: int, n_burst: int) -> dict[str, Any]:
    prefix = f"floor{uuid.uuid4().hex[:6]}"
    echo = subprocess.Popen(
        [sys.executable, "-m", "bench.echo", str(port), prefix],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert echo.stdout is not None
        echo.stdout.readline()  # "ready"
        lc = LoadClient(port, [f"{prefix}/resp"]).start()
        resp = f"{prefix}/resp"

        def count() -> int:
            return len(lc.raw.get(resp, []))

        for i in range(50):  # warm up
            n = count()
            lc.publish(f"{prefix}/req", b"w%d" % i)
            lc.wait(lambda n=n: count() > n, 5)  # type: ignore[misc]
        rtts: list[float] = []
        for i in range(n_latency):
            n = count()
            t0 = time.time()
            lc.publish(f"{prefix}/req", b"x%d" % i)
            lc.wait(lambda n=n: count() > n, 5)  # type: ignore[misc]
            rtts.append(lc.raw[resp][n] - t0)
        base = count()
        t0 = time.time()
        for i in range(n_burst):
            lc.publish(f"{prefix}/req", b"b%d" % i)
        ok = lc.wait(lambda: count() >= base + n_burst, 60)
        t1 = lc.raw[resp][-1]
        lc.stop()
        return {
            "round_trips": n_latency,
            "p50_ms": ms(pct(rtts, 50)),
            "p99_ms": ms(pct(rtts, 99)),
            "burst": n_burst,
            "burst_complete": ok,
            "msgs_per_s": round(n_burst / (t1 - t0)),
        }
    finally:
        echo.send_signal(signal.SIGTERM)
        echo.wait(10)


# ------------------------------------------------------------------ 2. latency


def latency_run(
    lc: LoadClient, users: list[str], n: int, tag: str, step: int = 1
) -> tuple[list[float], int]:
    """Sequential events (each waits for its first nudge); returns (latencies, timeouts)."""
    lat: list[float] = []
    timeouts = 0
    for i in range(n):
        user = users[(i * step) % len(users)]
        eid = f"{tag}-{i}"
        t0 = time.time()
        lc.publish(f"{BASE}/{user}/workout/completed", workout(eid, datetime.now(UTC)))
        if lc.wait(lambda eid=eid: eid in lc.first, 10):  # type: ignore[misc]
            lat.append(lc.first[eid] - t0)
        else:
            timeouts += 1
    return lat, timeouts


def latency_figures(lat: list[float], timeouts: int, floor_p50_ms: float) -> dict[str, Any]:
    p50 = ms(pct(lat, 50))
    return {
        "events": len(lat) + timeouts,
        "timeouts": timeouts,
        "p50_ms": p50,
        "p99_ms": ms(pct(lat, 99)),
        "max_ms": ms(max(lat)) if lat else None,
        "mean_ms": ms(statistics.fmean(lat)) if lat else None,
        "ratio_to_floor_p50": round(p50 / floor_p50_ms, 2) if floor_p50_ms else None,
    }


# ------------------------------------------------------------------ 0. peers


def bench_peers(port: int, workdir: Path, n_latency: int, n_burst: int) -> dict[str, Any]:
    """Each peer's latency and burst rate, with the service's events, through this broker."""
    out: dict[str, Any] = {}
    for peer_class in (PahoPeer, NodeRedPeer):
        peer = peer_class(workdir, port, BASE).start()
        try:
            out[peer.name] = peer_figures(peer, port, n_latency, n_burst)
            log(f"peer {peer.name}: {out[peer.name]}")
        finally:
            peer.stop()
    return out


def peer_figures(peer: Peer, port: int, n_latency: int, n_burst: int) -> dict[str, Any]:
    lc = LoadClient(port, [f"{BASE}/+/nudge"]).start()
    try:
        wait_ready(lc, peer, BASE)
        users = [f"p{i:06d}" for i in range(100)]
        latency_run(lc, users, 100, f"{peer.name}-warm")
        lat, timeouts = latency_run(lc, users, n_latency, f"{peer.name}-lat")
        tag = f"{peer.name}-burst"
        ids = [f"{tag}-{i}" for i in range(n_burst)]
        now = datetime.now(UTC)
        bodies = [
            (f"{BASE}/{users[i % 100]}/workout/completed", json.dumps(workout(e, now)))
            for i, e in enumerate(ids)
        ]
        cpu0, t0 = cpu_seconds(peer.pid), time.time()
        for topic, body in bodies:
            lc.client.publish(topic, body, qos=1)
        complete = lc.wait(lambda: lc.firsts_by_tag.get(tag, 0) >= n_burst, 120)
        t1 = max((lc.first.get(e, 0.0) for e in ids), default=t0)
        cpu = cpu_seconds(peer.pid) - cpu0
        cpu_all = cpu_until_quiet(peer.pid, cpu0)
    finally:
        lc.stop()
    return {
        "p50_ms": ms(pct(lat, 50)),
        "p99_ms": ms(pct(lat, 99)),
        "timeouts": timeouts,
        "burst": n_burst,
        "burst_complete": complete,
        "events_per_s": round(n_burst / (t1 - t0)),
        "burst_cpu_s": round(cpu, 2),
        "cpu_ms_per_event": round(1000 * cpu / n_burst, 3),
        "quiet_cpu_s": round(cpu_all, 2),
        "quiet_cpu_ms_per_event": round(1000 * cpu_all / n_burst, 3),
    }


def with_ratios(result: dict[str, Any]) -> None:
    """The service's figures as ratios to the peers' of the same run."""
    peers, lat, tp = result.get("peers"), result.get("latency"), result.get("throughput")
    if not peers:
        return
    ratios: dict[str, Any] = {}
    paho, red = peers.get("paho", {}), peers.get("node-red", {})
    if lat and paho.get("p50_ms"):
        ratios["p50_to_paho"] = round(lat["p50_ms"] / paho["p50_ms"], 2)
    if lat and red.get("p50_ms"):
        ratios["p50_to_node_red"] = round(lat["p50_ms"] / red["p50_ms"], 2)
    if tp and red.get("events_per_s"):
        ratios["events_per_s_to_node_red"] = round(tp["events_per_s"] / red["events_per_s"], 2)
    if tp and paho.get("events_per_s"):
        ratios["events_per_s_to_paho"] = round(tp["events_per_s"] / paho["events_per_s"], 2)
    if tp and paho.get("quiet_cpu_ms_per_event") and tp.get("quiet_cpu_ms_per_event"):
        ratios["cpu_per_event_to_paho"] = round(
            tp["quiet_cpu_ms_per_event"] / paho["quiet_cpu_ms_per_event"], 2
        )
    result["ratios"] = ratios


# ------------------------------------------------------------------ 2b. flood


FLOOD_PER_S = 50  # one device looping on its own topic (issue 10 measured 50 workouts/s)


def bench_flood(port: int, store: Store, workdir: Path, n: int) -> dict[str, Any]:
    """A quiet user's latency with and without a device flooding its own topic beside it;
    the flood is refused beyond the rate limit (config defaults) and its state stays small."""
    svc = Service(workdir, "flood", port, store.new_url("flood"))
    users = svc.write_config(1 + 50 + 2 * n, midday_zone())
    flooder, warm, quiet = users[0], users[1:51], users[51:]
    lc = LoadClient(port, [f"{BASE}/+/nudge", f"{BASE}/{flooder}/error"]).start()
    dev = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"flood-{uuid.uuid4().hex[:6]}")
    dev.max_inflight_messages_set(0)
    dev.max_queued_messages_set(0)
    dev.on_socket_open = nodelay
    stop = threading.Event()
    sent = 0

    def flood() -> None:
        nonlocal sent
        t0 = time.monotonic()
        while not stop.is_set():
            body = json.dumps(workout(f"flood-{sent}", datetime.now(UTC)))
            dev.publish(f"{BASE}/{flooder}/workout/completed", body, qos=1)
            sent += 1
            stop.wait(max(0.0, t0 + sent / FLOOD_PER_S - time.monotonic()))

    try:
        with running(svc):
            svc.wait_log("connected to", 60)
            dev.connect(HOST, port)
            dev.loop_start()
            latency_run(lc, warm, 50, "fwarm")
            calm, calm_timeouts = latency_run(lc, quiet[:n], n, "calm")
            flooding = threading.Thread(target=flood, daemon=True)
            flooding.start()
            # Past the burst the rate limit allows: the flood is being refused (steady state).
            stop.wait(RateLimitConfig().burst / FLOOD_PER_S + 2.0)
            busy, busy_timeouts = latency_run(lc, quiet[n:], n, "busy")
            stop.set()
            flooding.join(5)
            dev.disconnect()
            dev.loop_stop()
            flood_s = sent / FLOOD_PER_S
            rows = store_rows(
                svc.url, f"SELECT length(state) FROM rc_user_states WHERE user_id = '{flooder}'"
            )
            reports = len(lc.raw.get(f"{BASE}/{flooder}/error", []))
    finally:
        lc.stop()
    calm_p50, busy_p50 = ms(pct(calm, 50)), ms(pct(busy, 50))
    return {
        "flood_per_s": FLOOD_PER_S,
        "flood_events": sent,
        "flood_seconds": round(flood_s, 1),
        "quiet_events": 2 * n,
        "timeouts": calm_timeouts + busy_timeouts,
        "calm_p50_ms": calm_p50,
        "calm_p99_ms": ms(pct(calm, 99)),
        "flood_p50_ms": busy_p50,
        "flood_p99_ms": ms(pct(busy, 99)),
        "ratio_p50": round(busy_p50 / calm_p50, 2) if calm_p50 else None,
        "flooder_state_kb": round(rows[0][0] / 1024, 1) if rows else None,
        "refusal_reports": reports,
    }


# ------------------------------------------------------------------ 3. throughput


def bench_throughput(lc: LoadClient, svc: Service, users: list[str], n: int) -> dict[str, Any]:
    tag = f"tp{uuid.uuid4().hex[:6]}"
    ids = [f"{tag}-{i}" for i in range(n)]
    now = datetime.now(UTC)
    bodies = [
        (f"{BASE}/{users[i % len(users)]}/workout/completed", json.dumps(workout(e, now)).encode())
        for i, e in enumerate(ids)
    ]
    with lc.cond:
        before = len(lc.nudges)
    assert svc.proc is not None
    cpu0 = cpu_seconds(svc.proc.pid)
    t0 = time.time()
    for topic, body in bodies:
        lc.client.publish(topic, body, qos=1)
    t_sent = time.time()
    complete = lc.wait(lambda: lc.firsts_by_tag.get(tag, 0) >= n, 120)
    t_first_all = max((lc.first.get(e, 0.0) for e in ids), default=t0)
    cpu = cpu_seconds(svc.proc.pid) - cpu0  # before the stragglers' wait below
    # Let stragglers in (the other immediate nudges of the last events), then check the store.
    time.sleep(2.0)
    cpu_all = cpu_until_quiet(svc.proc.pid, cpu0)
    with lc.cond:
        mine = [g for g in lc.nudges[before:] if g.source.startswith(tag)]
    received = {g.nudge_id for g in mine}
    dup = sum(c - 1 for nid, c in lc.ids.items() if nid in received and c > 1)
    rows = store_rows(
        svc.url,
        "select n.nudge_id, n.status, n.due_at, n.payload, j.id is not null "
        "from rc_nudges n left join apscheduler_jobs j on j.id = n.nudge_id",
    )
    check_at = time.time()
    stored_immediate = 0
    scheduled = 0
    scheduled_with_job = 0
    lost = 0
    for nudge_id, status, due_at, payload, has_job in rows:
        if not json.loads(payload)["source_event_id"].startswith(tag):
            continue
        if status == "published" or due_at <= check_at:  # its time has come: must be out
            stored_immediate += 1
            if nudge_id not in received:
                lost += 1
        elif status == "pending" and due_at > check_at:
            scheduled += 1
            scheduled_with_job += int(bool(has_job))
    events_without_nudge = sum(1 for e in ids if e not in lc.first)
    last_immediate = max((g.at for g in mine), default=t0)
    return {
        "events": n,
        "users": len(users),
        "complete": complete,
        "publish_s": round(t_sent - t0, 3),
        "events_per_s": round(n / (t_first_all - t0)),
        "all_immediate_s": round(last_immediate - t0, 3),
        "events_per_s_all_immediate": round(n / (last_immediate - t0)),
        "burst_cpu_s": round(cpu, 2),
        "cpu_ms_per_event": round(1000 * cpu / n, 3),
        "quiet_cpu_s": round(cpu_all, 2),
        "quiet_cpu_ms_per_event": round(1000 * cpu_all / n, 3),
        "immediate_nudges_received": len(received),
        "immediate_nudges_stored": stored_immediate,
        "scheduled_jobs_expected": scheduled,
        "scheduled_jobs_stored": scheduled_with_job,
        "events_without_nudge": events_without_nudge,
        "lost": lost + events_without_nudge + (scheduled - scheduled_with_job),
        "duplicated": dup,
    }


# ------------------------------------------------------------------ 4. punctuality


def bench_punctuality(
    port: int, store: Store, workdir: Path, n_jobs: int, lead_s: float
) -> dict[str, Any]:
    """n_jobs users each get a protein reminder (R8: ended_at + 60 min) due in one minute."""
    url = store.new_url("punct")
    svc = Service(workdir, "punct", port, url)
    *users, warm_user = svc.write_config(n_jobs + 1, midday_zone())
    lc = LoadClient(port, [f"{BASE}/+/nudge"]).start()
    try:
        with running(svc):
            svc.wait_log("connected to", 120)
            # Settle: the first start plans every user's day (DayStart) and announces them.
            # A user of its own: a measured user's workout would join the warm-up's session
            # (its nudges then name the warm-up, and one reminder looked missing).
            warm = "warm-0"
            body = {**workout(warm, datetime.now(UTC)), "kind": "cardio", "focus": None}
            body.pop("focus")
            lc.publish(f"{BASE}/{warm_user}/workout/completed", body)
            lc.wait(lambda: warm in lc.first, 300)
            window_start = time.time() + lead_s
            due = [window_start + 60.0 * i / n_jobs for i in range(n_jobs)]
            tag = f"pu{uuid.uuid4().hex[:6]}"
            t0 = time.time()
            for i, user in enumerate(users):
                ended = datetime.fromtimestamp(due[i], UTC) - timedelta(minutes=60)
                lc.client.publish(
                    f"{BASE}/{user}/workout/completed",
                    json.dumps(workout(f"{tag}-{i}", ended)).encode(),
                    qos=1,
                )
            stored = lc.wait(lambda: lc.firsts_by_tag.get(tag, 0) >= n_jobs, 120)
            t_stored = time.time()
            log(
                f"punctuality: {n_jobs} events handled in {t_stored - t0:.1f}s; "
                f"window opens in {window_start - t_stored:.1f}s"
            )

            def protein() -> list[Got]:
                return [g for g in lc.nudges if g.kind == "protein" and g.source.startswith(tag)]

            lc.wait(
                lambda: lc.kinds_by_tag.get(("protein", tag), 0) >= n_jobs,
                window_start + 60 - time.time() + 60,
            )
            time.sleep(1)
            with lc.cond:
                got = protein()
            late = [g.at - g.due_at for g in got]
            rss = svc.rss_mb()
            return {
                "jobs": n_jobs,
                "window_s": 60,
                "handled_before_window": stored and t_stored < window_start,
                "published": len({g.nudge_id for g in got}),
                "missing": n_jobs - len({g.nudge_id for g in got}),
                "duplicated": len(got) - len({g.nudge_id for g in got}),
                "lateness_p50_ms": ms(pct(late, 50)),
                "lateness_p99_ms": ms(pct(late, 99)),
                "lateness_max_ms": ms(max(late)) if late else None,
                "early": sum(1 for x in late if x < 0),
                "rss_mb": rss[0],
            }
    finally:
        lc.stop()


# ------------------------------------------------------------------ 5. scale


def bench_scale(
    port: int, store: Store, workdir: Path, n_users: int, n_latency: int, floor_p50: float
) -> dict[str, Any]:
    url = store.new_url("scale")
    svc = Service(workdir, "scale", port, url)
    t0 = time.time()
    users = svc.write_config(n_users, midday_zone(), as_json=True)
    log(f"scale: config of {n_users} users written ({time.time() - t0:.1f}s); seeding")
    # Seed through the service itself: the first start plans every user's day (R9 wind-down
    # and bedtime nudges, the next day start), exactly the rows a running install holds.
    t0 = time.time()
    with running(svc):
        deadline = time.time() + 900
        while time.time() < deadline:
            time.sleep(1)
            with contextlib.suppress(Exception):
                n = store_rows(
                    url,
                    "select (select count(*) from apscheduler_jobs where id like 'day:%'), "
                    "(select count(*) from rc_meta where key = 'announced')",
                )
                if n[0][0] >= n_users and n[0][1] >= 1:  # days planned, everyone announced
                    break
            if svc.proc is not None and svc.proc.poll() is not None:
                raise RuntimeError(f"service died while seeding:\n{svc.log()[-3000:]}")
        svc.wait_log("connected to", 60)
    seed_s = time.time() - t0
    counts = store_rows(
        url,
        "select (select count(*) from apscheduler_jobs), "
        "(select count(*) from rc_nudges where status = 'pending'), "
        "(select count(*) from rc_user_states)",
    )[0]
    log(f"scale: seeded in {seed_s:.1f}s: {counts[0]} jobs, {counts[1]} pending nudges")
    lc = LoadClient(port, [f"{BASE}/+/nudge"]).start()
    try:
        svc.started_at = 0.0
        first = "start-0"
        svc.start()
        t_start = svc.started_at
        # Queued by the broker in the service's persistent session until it is back.
        lc.publish(f"{BASE}/{users[-1]}/workout/completed", workout(first, datetime.now(UTC)))
        handled = lc.wait(lambda: first in lc.first, 120)
        startup = lc.first[first] - t_start if handled else None
        try:
            lat, timeouts = latency_run(lc, users, n_latency, f"sc{uuid.uuid4().hex[:6]}", 7919)
            rss = svc.rss_mb()
        finally:
            svc.stop()
        return {
            "users": n_users,
            "jobs_in_store": counts[0],
            "pending_nudges": counts[1],
            "seed_s": round(seed_s, 1),
            "startup_s": round(startup, 3) if startup is not None else None,
            "rss_mb": rss[0],
            "peak_rss_mb": rss[1],
            "latency": latency_figures(lat, timeouts, floor_p50),
        }
    finally:
        lc.stop()
