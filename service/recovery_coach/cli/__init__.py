"""The `recovery-coach` command line (CONTRACT.md): run, check-config, simulate, status;
and addon-config, the Home Assistant add-on's start."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from recovery_coach.contract.config import Config, ConfigError, load_config, summary

DEFAULT_CONFIG = Path("config/example.yaml")


def _load(path: Path) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{path}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def cmd_check_config(args: argparse.Namespace) -> int:
    from recovery_coach.mqtt.link import credentials_problem, unreadable_password_file
    from recovery_coach.store.check import shown, store_problem

    cfg = _load(args.config)
    if cfg is None:
        return 2
    problems = []
    if cfg.broker is not None:
        if (unreadable := unreadable_password_file(cfg.broker)) is not None:
            # Secrets are often mounted only where the service runs (a container, systemd's
            # credentials): said here, refused by `run` if it is still so at start.
            print(f"note: {unreadable}; `run` refuses to start without it", file=sys.stderr)
        elif (login := credentials_problem(cfg.broker)) is not None:
            problems.append(login)
    problem = store_problem(cfg.store)  # read-only: creates nothing
    if problem is not None:
        problems.append(f"store: {shown(cfg.store)}: {problem.reason}")
    if problems:
        print(f"{args.config}: {len(problems)} problem(s)", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 2
    print(summary(cfg))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from recovery_coach.runtime.simulate import simulate

    cfg = _load(args.config)
    if cfg is None:
        return 2
    try:
        lines = args.events.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"cannot read {args.events}: {exc}", file=sys.stderr)
        return 2
    simulate(cfg, lines, args.horizon_hours, sys.stdout, sys.stderr)
    return 0


def _instance_name(text: str) -> str:
    from recovery_coach.contract.shards import INSTANCE_NAME

    if not INSTANCE_NAME.fullmatch(text) or text == "shards":
        raise argparse.ArgumentTypeError("letters, digits, _ . - (1 to 64), and not 'shards'")
    return text


def cmd_run(args: argparse.Namespace) -> int:
    from recovery_coach.runtime.run import run

    cfg = _load(args.config)
    if cfg is None:
        return 2
    if args.instance is not None:
        cfg = cfg.model_copy(update={"instance": args.instance})
    return run(cfg, args.config)


def cmd_status(args: argparse.Namespace) -> int:
    from recovery_coach.mqtt.status import print_status

    cfg = _load(args.config)
    if cfg is None:
        return 2
    return print_status(cfg, args.timeout)


def cmd_publish_example(args: argparse.Namespace) -> int:
    from recovery_coach.mqtt.status import publish_example

    cfg = _load(args.config)
    if cfg is None:
        return 2
    return publish_example(cfg, args.user)


def cmd_addon_config(args: argparse.Namespace) -> int:
    from recovery_coach.cli.addon import SupervisorError, from_environment, write_addon_config

    try:
        out = write_addon_config(from_environment(), args.options, args.out, args.data)
    except SupervisorError as exc:
        print(f"addon-config: {exc}", file=sys.stderr)
        return 2
    cfg = _load(out)
    if cfg is None:
        return 2
    print(summary(cfg))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recovery-coach", description="Evidence-based workout-recovery nudges over MQTT."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser, required: bool = False) -> None:
        p.add_argument(
            "--config",
            type=Path,
            required=required,
            default=None if required else DEFAULT_CONFIG,
            help=f"YAML config file (default {DEFAULT_CONFIG})"
            if not required
            else "YAML config file",
        )

    p = sub.add_parser("run", help="run the service (embedded broker when none is configured)")
    with_config(p)
    p.add_argument(
        "--instance",
        type=_instance_name,
        help="this instance's name when sharded (default: the config's, else host-pid)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a config; exit 0, or 2 with every problem")
    with_config(p)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("simulate", help="replay inbound messages on a virtual clock, no broker")
    with_config(p, required=True)
    p.add_argument("events", type=Path, help="EVENTS.jsonl: {topic, payload, received_at?} a line")
    p.add_argument("--horizon-hours", type=float, default=36.0, help="after the last input (36)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("status", help="ask the running service how it is (via its broker)")
    with_config(p)
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for an answer")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("publish-example", help="publish an example leg-day workout for a user")
    with_config(p)
    p.add_argument("--user", help="user id (default: the first in the config)")
    p.set_defaults(func=cmd_publish_example)

    p = sub.add_parser(
        "addon-config",
        help="inside the Home Assistant add-on: write the config from the Supervisor's answers",
    )
    p.add_argument("--options", type=Path, default=Path("/data/options.json"))
    p.add_argument("--out", type=Path, default=Path("/data/config.json"))
    p.add_argument("--data", type=Path, default=Path("/data"), help="where the store lives")
    p.set_defaults(func=cmd_addon_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # here, not at exit, where a closed pipe would be a traceback
    except BrokenPipeError:
        # `status | head`: the reader left. Python's documented way out: no traceback,
        # and no second error when the interpreter flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
