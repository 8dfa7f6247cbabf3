"""The YAML config: the contract's example is accepted; every problem is named by its path."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest
import yaml
from recovery_coach.cli import main
from recovery_coach.contract.config import ConfigError, load_config, parse_config

HERE = Path(__file__).parents[1]  # tests/
CONTRACT_EXAMPLE = HERE / "configs" / "contract-example.yaml"
README_EXAMPLE = HERE.parent / "config" / "example.yaml"


def test_every_key_of_the_contract_example_is_accepted() -> None:
    cfg = load_config(CONTRACT_EXAMPLE)
    assert cfg.broker is not None
    assert (cfg.broker.host, cfg.broker.port, cfg.broker.username) == ("localhost", 1883, "coach")
    assert cfg.broker.password_file == Path("/run/secrets/mqtt")
    assert cfg.broker.tls is not None
    assert cfg.broker.tls.ca_file == Path("/etc/ssl/certs/ca.pem")
    assert cfg.base_topic == "recovery_coach"
    assert cfg.store == "sqlite:///recovery_coach.db"
    alex = cfg.profiles()["alex"]
    assert alex.name == "Alex"
    assert alex.timezone == "Europe/Berlin"
    assert alex.weight_kg == 80
    assert (alex.goal, alex.running_experience) == ("endurance", "advanced")
    assert alex.sleep_hours == 8
    assert alex.wake_times == (time(6, 30),) * 7
    assert alex.protein_g_per_kg == 1.6
    assert alex.weekly_plan == ((0, "legs"), (2, "upper"), (4, "full"))


def test_the_readme_example_is_accepted_with_per_weekday_wake_times() -> None:
    sam = load_config(README_EXAMPLE).profiles()["sam"]
    assert sam.wake_times == (time(6),) * 5 + (time(8),) * 2
    assert sam.settings.cooldown_minutes == 8
    assert sam.timezone == "America/New_York"


def test_defaults_come_from_the_rule_book() -> None:
    """RULES.md defaults: general, intermediate, 8 h, 07:00 every day, 1.6 g/kg, no weight."""
    p = parse_config({"timezone": "Europe/Berlin", "users": {"kim": {}}}).profiles()["kim"]
    assert (p.goal, p.running_experience, p.sleep_hours) == ("general", "intermediate", 8)
    assert p.wake_times == (time(7),) * 7
    assert p.protein_g_per_kg == 1.6
    assert p.weight_kg is None
    assert p.timezone == "Europe/Berlin"  # the service's zone
    assert p.weekly_plan == ()


def problems(data: object) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return {p.path: p.reason for p in info.value.problems}


USER = "users.alex"
# (path, the offending YAML, words the reason must contain)
PROBLEMS = [
    ("users.alex.weight_kg", "users: {alex: {weight_kg: 20}}", "between 25 and 400"),
    ("users.alex.weight_kg", "users: {alex: {weight_kg: eighty}}", "must be a number"),
    ("users.alex.sleep_hours", "users: {alex: {sleep_hours: 7}}", "8 is the minimum"),
    ("users.alex.protein_g_per_kg", "users: {alex: {protein_g_per_kg: 3.2}}", "1.2 and 3"),
    ("users.alex.protein_g_per_kg", "users: {alex: {protein_g_per_kg: 1.0}}", "1.2 and 3"),
    ("users.alex.goal", "users: {alex: {goal: bulk}}", "hypertrophy, strength, endurance"),
    ("users.alex.running_experience", "users: {alex: {running_experience: pro}}", "beginner"),
    ("users.alex.timezone", "users: {alex: {timezone: Europe/Berlinn}}", "IANA time zone"),
    ("users.alex.wake_time", 'users: {alex: {wake_time: "7am"}}', '"06:30"'),
    ("users.alex.wake_time", "users: {alex: {wake_time: 7:30}}", "in quotes"),
    ("users.alex.wake_time.tue", 'users: {alex: {wake_time: {tue: "25:00"}}}', "24-hour"),
    ("users.alex.wake_time.tue", "users: {alex: {wake_time: {tue: 6:30}}}", "in quotes"),
    (
        "users.alex.wake_time.funday",
        'users: {alex: {wake_time: {funday: "06:00"}}}',
        "not a known key",
    ),
    ("users.alex.weekly_plan.mon", "users: {alex: {weekly_plan: {mon: chest}}}", "legs, lower"),
    ("users.alex.colour", "users: {alex: {colour: red}}", "not a known key"),
    ("users.alex", "users: {alex: }", "mapping"),
    ("users.Alex", "users: {Alex: {}}", "a-z, 0-9 and _"),
    (
        "users.alex.settings.endurance_separation_hours",
        "users: {alex: {settings: {endurance_separation_hours: 3}}}",
        "between 6 and 48",
    ),
    (
        "users.alex.settings.zone2_target_minutes_week",
        "users: {alex: {settings: {zone2_target_minutes_week: 60}}}",
        "between 120 and 180",
    ),
    ("defaults.cooldown_minutes", 'defaults: {cooldown_minutes: "5"}', "whole number"),
    ("defaults.zone2_check_weekday", "defaults: {zone2_check_weekday: funday}", "mon, tue"),
    ("base_topic", 'base_topic: "coach/#"', "wildcards"),
    ("base_topic", 'base_topic: ""', "must not be empty"),
    ("base_topic", 'base_topic: "$SYS/x"', "must not start with $"),
    ("base_topic", 'base_topic: "/"', "empty level"),
    ("base_topic", 'base_topic: "coach/"', "empty level"),
    ("base_topic", 'base_topic: "a//b"', "empty level"),
    ("base_topic", 'base_topic: "homeassistant"', "discovery"),
    ("base_topic", 'base_topic: "homeassistant/coach"', "discovery"),
    *[
        (f"users.{u}", f"users: {{{u}: {{}}}}", "reserved")
        for u in ("recovery_coach", "homeassistant", "status", "diagnostics")
    ],
    ("timezone", "timezone: Mars/Olympus", "IANA time zone"),
    ("brokr", "brokr: {}", "not a known key"),
    ("broker.port", "broker: {port: 99999}", "between 1 and 65535"),
    ("broker.password", "broker: {password: hunter2}", "password_file"),
    ("broker.tls", "broker: {tls: {cert_file: client.pem}}", "give both or neither"),
    ("broker.protocol", "broker: {protocol: 4}", "must be one of"),
    ("log_level", "log_level: LOUD", "DEBUG, INFO"),
]


@pytest.mark.parametrize(
    ("path", "text", "words"), PROBLEMS, ids=[f"{p[0]}: {p[1]}" for p in PROBLEMS]
)
def test_each_problem_is_named_by_its_path(path: str, text: str, words: str) -> None:
    found = problems(yaml.safe_load(text))
    assert path in found, found
    assert words in found[path]
    assert "Input should" not in found[path]  # pydantic's wording, not ours


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        {
            "broker": {"port": 0, "password": "x"},
            "users": {"alex": {"weight_kg": 10, "goal": "bulk"}, "sam": {"sleep_hours": 6}},
        }
    )
    assert set(found) == {
        "broker.port",
        "broker.password",
        "users.alex.weight_kg",
        "users.alex.goal",
        "users.sam.sleep_hours",
    }


def test_not_a_mapping() -> None:
    assert problems(["a", "b"]) == {"": "the file must hold a YAML mapping (key: value lines)"}


# ------------------------------------------------------------------ check-config


def test_check_config_valid_prints_one_line_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(CONTRACT_EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert out.count("\n") == 1
    assert out.startswith("config OK: 1 user(s) (alex)")
    # the example's secret is mounted only where the service runs: a note, not a refusal
    assert err.startswith("note: broker.password_file: cannot read /run/secrets/mqtt"), err
    assert err.count("\n") == 1


def test_check_config_invalid_names_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("users:\n  alex:\n    weight_kg: 20\n    sleep_hours: 7\nbrokr: {}\n")
    assert main(["check-config", "--config", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "3 problem(s)" in err
    assert "users.alex.weight_kg: must be between 25 and 400" in err
    assert "users.alex.sleep_hours: must be between 8 and 12 hours (8 is the minimum)" in err
    assert "brokr: is not a known key" in err


@pytest.mark.parametrize(
    ("content", "words"),
    [(None, "cannot read"), ("users: [\n", "not valid YAML at line 2"), ("- 1\n", "YAML mapping")],
    ids=["missing file", "broken YAML", "a list"],
)
def test_check_config_unreadable_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, words: str
) -> None:
    path = tmp_path / "c.yaml"
    if content is not None:
        path.write_text(content)
    assert main(["check-config", "--config", str(path)]) == 2
    assert words in capsys.readouterr().err
