"""Recovery Coach benchmarks: the live service against what the broker itself allows.

One command (`bench/run`, or `python -m bench`) starts its own mosquitto on a free port (per-
client queue limits lifted), the service as a child process (`python -m recovery_coach.cli
run`) on a temporary store, and drives it from this process with one paho client:

1. floor        a bare paho echo client (bench/echo.py, its own process) through the same
                broker: round trip p50/p99 and QoS 1 messages/s
2. latency      workout event published -> first nudge received, sequential events
3. throughput   a QoS 1 burst over 100 users; every immediate nudge received, every
                scheduled job stored, lost and duplicated nudges counted
4. punctuality  protein reminders (R8) of many users due within one minute: published
                time - due time
5. scale        many users with their pending jobs in the store: resident memory,
                start-up time (process start -> first event handled), latency at that size

Figures are printed as a markdown table and written to bench/results/latest-<store>.json.
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import (
    BASE,
    HOST,
    ROOT,
    LoadClient,
    Service,
    Store,
    ensure_postgres,
    log,
    midday_zone,
    running,
)
from bench.instances import bench_instances, instances_table
from bench.report import HISTORY_MARK, machine, results_md, table, targets_table
from bench.sections import (
    bench_flood,
    bench_floor,
    bench_peers,
    bench_punctuality,
    bench_scale,
    bench_throughput,
    latency_figures,
    latency_run,
    with_ratios,
)
from tests.support.mosquitto import MosquittoBroker

# ------------------------------------------------------------------ main


@dataclass(frozen=True)
class Sizes:
    floor_rtts: int
    floor_burst: int
    latency: int
    burst: int
    punct_jobs: int
    punct_lead_s: float
    scale_users: int
    scale_latency: int


# The punctuality lead leaves time to handle every event before the first reminder is due.
FULL = Sizes(2000, 20000, 1000, 5000, 10000, 60.0, 100_000, 1000)
QUICK = Sizes(500, 5000, 300, 2000, 2000, 20.0, 10_000, 200)


def run_store(kind: str, sizes: Sizes, sections: set[str], keep: bool) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"rc-bench-{kind}-"))
    if kind == "postgres":
        ensure_postgres()
    store = Store(kind, workdir)
    result: dict[str, Any] = {"store": kind, "machine": machine(), "sizes": sizes.__dict__}
    # set_tcp_nodelay: mosquitto's own sockets would otherwise hold small packets back
    # (Nagle + delayed ACK: 40 ms per hop), for the floor and the service alike.
    broker = MosquittoBroker(
        directory=workdir / "broker", persistence=False, extra_config="set_tcp_nodelay true"
    )
    broker.start()
    try:
        port = broker.port
        log(f"{kind}: mosquitto on {HOST}:{port}, work in {workdir}")
        floor_p50 = 0.0
        if "floor" in sections:
            result["floor"] = bench_floor(port, sizes.floor_rtts, sizes.floor_burst)
            floor_p50 = result["floor"]["p50_ms"]
            log(f"floor: {result['floor']}")
        if sections & {"latency", "throughput"}:
            svc = Service(workdir, "main", port, store.new_url("main"))
            # A user of its own for every event: workouts of one user that end together are
            # one session (one set of nudges), which is not what these sections measure.
            users = svc.write_config(100 + sizes.latency + sizes.burst, midday_zone())
            warm, lat_users, burst_users = (
                users[:100],
                users[100 : 100 + sizes.latency],
                users[100 + sizes.latency :],
            )
            lc = LoadClient(port, [f"{BASE}/+/nudge"]).start()
            try:
                with running(svc):
                    svc.wait_log("connected to", 60)
                    latency_run(lc, warm, 100, "warm")  # warm up: imports, caches, pages
                    if "latency" in sections:
                        lat, timeouts = latency_run(lc, lat_users, sizes.latency, "lat")
                        result["latency"] = latency_figures(lat, timeouts, floor_p50)
                        log(f"latency: {result['latency']}")
                    if "throughput" in sections:
                        result["throughput"] = bench_throughput(lc, svc, burst_users, sizes.burst)
                        log(f"throughput: {result['throughput']}")
                    result["main_rss_mb"] = svc.rss_mb()[0]
            finally:
                lc.stop()
        if "peers" in sections:
            result["peers"] = bench_peers(port, workdir, sizes.latency, sizes.burst)
        if "flood" in sections:
            result["flood"] = bench_flood(port, store, workdir, sizes.latency // 3)
            log(f"flood: {result['flood']}")
        if "punctuality" in sections:
            result["punctuality"] = bench_punctuality(
                port, store, workdir, sizes.punct_jobs, sizes.punct_lead_s
            )
            log(f"punctuality: {result['punctuality']}")
        if "scale" in sections:
            result["scale"] = bench_scale(
                port, store, workdir, sizes.scale_users, sizes.scale_latency, floor_p50
            )
            log(f"scale: {result['scale']}")
    finally:
        broker.close()
        store.close()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    with_ratios(result)
    return result


def run_instances(counts: list[int], n: int, keep: bool) -> int:
    """`--instances`: the sharded service as 1, 2, 3... instances, one after the other."""

    ensure_postgres()
    workdir = Path(tempfile.mkdtemp(prefix="rc-bench-instances-"))
    store = Store("postgres", workdir)
    broker = MosquittoBroker(
        directory=workdir / "broker", persistence=False, extra_config="set_tcp_nodelay true"
    )
    broker.start()
    try:
        rows = bench_instances(broker.port, store, workdir, counts, n)
    finally:
        broker.close()
        store.close()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    out = ROOT / "bench" / "results" / "latest-instances.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n")
    m = machine()
    print(f"\n{m['date']}: {m['nproc']} cores, {m['cpu']}, Python {m['python']}\n")
    print(instances_table(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", choices=("sqlite", "postgres", "both"), default="sqlite")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, a few minutes")
    ap.add_argument(
        "--only",
        default="floor,peers,latency,flood,throughput,punctuality,scale",
        help="comma-separated sections (floor, peers, latency, flood, throughput, "
        "punctuality, scale)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument(
        "--py-spy",
        metavar="DIR",
        type=Path,
        help="record every service process with py-spy into DIR (speedscope JSON)",
    )
    ap.add_argument(
        "--instances",
        metavar="N,N,...",
        help="only the sharded service: 16 shards on PostgreSQL run as N instances (1,2,3)",
    )
    args = ap.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.instances:
        return run_instances([int(x) for x in args.instances.split(",")], sizes.burst, args.keep)
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)
        Service.profile_dir = args.py_spy.resolve()
    sections = set(args.only.split(","))
    kinds = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    results = []
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        res = run_store(kind, sizes, sections, args.keep)
        res["quick"] = args.quick
        (out_dir / f"latest-{kind}.json").write_text(json.dumps(res, indent=2) + "\n")
        results.append(res)
    m = results[0]["machine"]
    print(
        f"\n{m['date']}: {m['nproc']} cores, {m['cpu']}, Python {m['python']}, "
        f"mosquitto {m['mosquitto']}{' (quick)' if args.quick else ''}\n"
    )
    print(table(results))
    print()
    print(targets_table(results))
    if sections >= {"floor", "latency", "throughput", "punctuality", "scale"}:
        out = ROOT / "bench" / "RESULTS.md"
        history = out.read_text().partition(HISTORY_MARK)[2] if out.exists() else ""
        out.write_text(results_md(results, args.quick) + f"\n{HISTORY_MARK}{history}")
        log("bench/RESULTS.md written")
    return 0
