"""The figures as tables: the markdown printed and written to bench/RESULTS.md, the
targets, and the machine they were measured on."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mosq = subprocess.run(
        ["/usr/sbin/mosquitto", "-h"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "mosquitto": mosq[0].replace("mosquitto version ", "") if mosq else "?",
        "kernel": platform.release(),
    }


def _get(d: dict[str, Any], *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return "-"
        d = d[p]
    return d


def table(results: list[dict[str, Any]]) -> str:
    """A markdown table: one row per figure, one column per store."""
    rows: list[tuple[str, str, tuple[str, ...]]] = [
        (
            "0 peers",
            "bare paho automation p50 / p99 (ms)",
            ("peers.paho.p50_ms", "peers.paho.p99_ms"),
        ),
        (
            "0 peers",
            "bare paho: events/s, CPU ms/event (to the last first nudge / until quiet)",
            (
                "peers.paho.events_per_s",
                "peers.paho.cpu_ms_per_event",
                "peers.paho.quiet_cpu_ms_per_event",
            ),
        ),
        (
            "0 peers",
            "Node-RED flow p50 / p99 (ms)",
            ("peers.node-red.p50_ms", "peers.node-red.p99_ms"),
        ),
        (
            "0 peers",
            "Node-RED: events/s, CPU ms/event (to the last first nudge / until quiet)",
            (
                "peers.node-red.events_per_s",
                "peers.node-red.cpu_ms_per_event",
                "peers.node-red.quiet_cpu_ms_per_event",
            ),
        ),
        ("0 peers", "service p50 / paho p50", ("ratios.p50_to_paho",)),
        ("0 peers", "service events/s / Node-RED's", ("ratios.events_per_s_to_node_red",)),
        (
            "0 peers",
            "service CPU per event / paho's (until quiet)",
            ("ratios.cpu_per_event_to_paho",),
        ),
        ("1 floor", "echo round trip p50 / p99 (ms)", ("floor.p50_ms", "floor.p99_ms")),
        ("1 floor", "echo QoS 1 messages/s", ("floor.msgs_per_s",)),
        ("2 latency", "event -> first nudge p50 / p99 (ms)", ("latency.p50_ms", "latency.p99_ms")),
        ("2 latency", "p50 / floor p50", ("latency.ratio_to_floor_p50",)),
        (
            "2b flood",
            "quiet user p50 calm / beside a 50/s flood (ms)",
            ("flood.calm_p50_ms", "flood.flood_p50_ms"),
        ),
        ("2b flood", "p50 beside the flood / calm", ("flood.ratio_p50",)),
        (
            "2b flood",
            "flooder's state (KB) / refusal reports",
            ("flood.flooder_state_kb", "flood.refusal_reports"),
        ),
        ("3 throughput", "events/s (first nudge of every event)", ("throughput.events_per_s",)),
        (
            "3 throughput",
            "events/s (every immediate nudge)",
            ("throughput.events_per_s_all_immediate",),
        ),
        (
            "3 throughput",
            "CPU for the burst (s), ms per event",
            ("throughput.burst_cpu_s", "throughput.cpu_ms_per_event"),
        ),
        (
            "3 throughput",
            "CPU until quiet (s), ms per event",
            ("throughput.quiet_cpu_s", "throughput.quiet_cpu_ms_per_event"),
        ),
        (
            "3 throughput",
            "immediate nudges received / stored",
            ("throughput.immediate_nudges_received", "throughput.immediate_nudges_stored"),
        ),
        (
            "3 throughput",
            "scheduled jobs stored / expected",
            ("throughput.scheduled_jobs_stored", "throughput.scheduled_jobs_expected"),
        ),
        ("3 throughput", "lost / duplicated", ("throughput.lost", "throughput.duplicated")),
        ("4 punctuality", "jobs due in one minute", ("punctuality.jobs",)),
        (
            "4 punctuality",
            "lateness p50 / p99 (ms)",
            ("punctuality.lateness_p50_ms", "punctuality.lateness_p99_ms"),
        ),
        (
            "4 punctuality",
            "missing / duplicated",
            ("punctuality.missing", "punctuality.duplicated"),
        ),
        ("5 scale", "users / jobs in store", ("scale.users", "scale.jobs_in_store")),
        ("5 scale", "resident memory (MB), peak", ("scale.rss_mb", "scale.peak_rss_mb")),
        ("5 scale", "start-up: process start -> first event handled (s)", ("scale.startup_s",)),
        (
            "5 scale",
            "latency p50 / p99 at that size (ms)",
            ("scale.latency.p50_ms", "scale.latency.p99_ms"),
        ),
    ]
    head = "| section | figure | " + " | ".join(r["store"] for r in results) + " |"
    out = [head, "|---|---|" + "---|" * len(results)]
    for section, label, paths in rows:
        cells = [" / ".join(str(_get(r, *p.split("."))) for p in paths) for r in results]
        out.append(f"| {section} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


TARGETS: list[tuple[str, str, Callable[[dict[str, Any]], Any], Callable[[Any], bool]]] = [
    (
        "latency p50 within 1.5x the bare paho automation's",
        "ratios.p50_to_paho",
        lambda r: _get(r, "ratios", "p50_to_paho"),
        lambda v: v <= 1.5,
    ),
    (
        "latency p99 under 5 ms",
        "latency.p99_ms",
        lambda r: _get(r, "latency", "p99_ms"),
        lambda v: v < 5,
    ),
    (
        "burst events/s at least the Node-RED flow's, 0 lost, 0 doubled",
        "ratios.events_per_s_to_node_red, throughput.lost, throughput.duplicated",
        lambda r: (
            _get(r, "ratios", "events_per_s_to_node_red"),
            _get(r, "throughput", "lost"),
            _get(r, "throughput", "duplicated"),
        ),
        lambda v: v[0] >= 1 and v[1] == 0 and v[2] == 0,
    ),
    (
        "punctuality p99 under 100 ms (10,000 due in one minute)",
        "punctuality.lateness_p99_ms",
        lambda r: _get(r, "punctuality", "lateness_p99_ms"),
        lambda v: v < 100,
    ),
    (
        "100,000 users: under 300 MB resident",
        "scale.rss_mb",
        lambda r: _get(r, "scale", "rss_mb"),
        lambda v: v < 300,
    ),
    (
        "100,000 users: start-up under 5 s",
        "scale.startup_s",
        lambda r: _get(r, "scale", "startup_s"),
        lambda v: v < 5,
    ),
]


def targets_table(results: list[dict[str, Any]]) -> str:
    head = "| target | " + " | ".join(r["store"] for r in results) + " |"
    out = [head, "|---|" + "---|" * len(results)]
    for label, _path, get, ok in TARGETS:
        cells = []
        for r in results:
            v = get(r)
            try:
                mark = "met" if ok(v) else "not met"
            except TypeError:
                mark = "not run"
            shown = " / ".join(map(str, v)) if isinstance(v, tuple) else str(v)
            cells.append(f"{shown} ({mark})")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


# RESULTS.md below this line is written by hand (the dated history of what was measured and
# tried); bench/run rewrites only what is above it.
HISTORY_MARK = "<!-- history: written by hand, kept by bench/run -->\n"


def results_md(results: list[dict[str, Any]], quick: bool) -> str:
    m = results[0]["machine"]
    return f"""# Benchmark results

Latest run of `bench/run --store {"both" if len(results) > 1 else results[0]["store"]}\
{" --quick" if quick else ""}` on {m["date"]}: {m["nproc"]} cores ({m["cpu"]}), Linux \
{m["kernel"]}, Python {m["python"]}, mosquitto {m["mosquitto"]}, loopback. Raw figures: \
`bench/results/latest-<store>.json`. Nothing in the test suite asserts a time.

{table(results)}

## Against the targets

{targets_table(results)}

## What each row measures

1. **floor**: a bare paho-mqtt echo client (`bench/echo.py`, its own process, no persistence,
   TCP_NODELAY) through the same mosquitto: round trip of one QoS 1 message, sequential; and
   QoS 1 messages/s echoed for a burst. The physical limit of one Python MQTT client here.
2. **latency**: a workout event published (QoS 1) -> the first nudge received, sequential
   events over 100 users, after 100 warm-up events. The service decides, commits (one
   transaction), then publishes and acknowledges.
2b. **flood**: one user's device publishes workouts at 50/s on its own topic; the latency
   of (2) for other users before and during the flood, the ratio of the two p50s, the
   flooder's stored state and the refusals reported on its error topic (rate limit: the
   config defaults, 30 a minute after a burst of 120), measured once the burst has passed.
3. **throughput**: a QoS 1 burst (the service: a user of its own per event, as workouts
   of one user that end together are one session; the peers: 100 users); events/s
   until every event's immediate nudges arrived. Lost = immediate nudges stored but not
   received, events without a nudge, scheduled nudges without their job row; duplicated =
   a nudge id received twice.
   CPU is read twice, for the service and the peers alike: when the last event's first
   nudge arrived, and once the process is quiet (under 4% of a core for 0.25 s), which
   counts the work it deferred (states, PUBACK marks); the CPU ratio uses the second.
4. **punctuality**: one protein reminder (R8) per user, due spread evenly over one minute,
   each from a workout that ended an hour before; lateness = received - `due_at`.
5. **scale**: users with their pending jobs (the day start and two bedtime nudges each),
   seeded by running the service once; then a restart: resident memory after the latency
   run, start-up = process start -> first event's nudge received (the event was queued by
   the broker in the service's persistent session), and the latency of (2) at that size.
   The generated config is JSON (YAML's subset).

mosquitto runs with per-client queue limits lifted and `set_tcp_nodelay true` (without it,
each hop waits for the 40 ms delayed ACK: the floor was 44 ms).
"""
