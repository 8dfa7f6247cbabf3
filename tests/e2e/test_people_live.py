"""People set up over MQTT against a real mosquitto and the service as a child process:
a service with no users gains one from a retained profile, sends their nudges, keeps them
across a restart on a broker that has lost every retained message, answers an invalid
profile by field, refuses a YAML user's profile and the profile past max_users, and
forgets the person on an empty profile. And the shipped ACL: only Home Assistant's account
may publish a profile."""

from __future__ import annotations

from pathlib import Path

from tests.support.mosquitto import BrokerFactory
from tests.support.service_process import (
    Recorder,
    ServiceProcess,
    publish,
    refused_publish,
    user_config,
    workout,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE = "recovery_coach"


def test_people_come_stay_across_a_restart_and_go(
    tmp_path: Path, mosquitto_factory: BrokerFactory
) -> None:
    broker = mosquitto_factory()
    rec = Recorder(broker.host, broker.port, [f"{BASE}/#", "homeassistant/device/+/config"]).start()
    svc = ServiceProcess(
        tmp_path / "svc",
        port=broker.port,
        base=BASE,
        users={"yaml_user": user_config()},
        extra={"max_users": 2},
    )
    try:
        svc.start().wait_connected()
        publish(
            broker.port,
            f"{BASE}/robin/profile",
            user_config(name="Robin", weight_kg=70),
            retain=True,
        )
        rec.wait_for(lambda r: bool(r.on(f"{BASE}/robin/state")), 10, "robin's state")
        rec.wait_for(
            lambda r: bool(r.on("homeassistant/device/recovery_coach_robin/config")),
            10,
            "robin's discovery",
        )
        event = workout()
        publish(broker.port, f"{BASE}/robin/workout/completed", event)
        rec.wait_for(
            lambda r: any(n["kind"] == "cooldown_start" for n in r.nudges("robin", BASE)),
            10,
            "robin's cooldown",
        )

        # Invalid: every problem by field; the previous profile stays in force.
        publish(
            broker.port, f"{BASE}/robin/profile", user_config(weight_kg=7, goal="bulk"), retain=True
        )
        rec.wait_for(lambda r: bool(r.on(f"{BASE}/robin/error")), 10, "robin's error")
        err = rec.on(f"{BASE}/robin/error")[-1].json()
        assert {p["field"] for p in err["problems"]} == {"weight_kg", "goal"}
        assert "weight_kg: must be between 25 and 400" in err["reason"]

        # Changed: the new profile is in force at once (the state names the new name, and
        # discovery follows).
        publish(
            broker.port,
            f"{BASE}/robin/profile",
            user_config(name="Robin B", weight_kg=71),
            retain=True,
        )
        rec.wait_for(
            lambda r: any(m.json().get("name") == "Robin B" for m in r.on(f"{BASE}/robin/state")),
            10,
            "robin's state under the new profile",
        )

        # The YAML's user belongs to the YAML.
        publish(broker.port, f"{BASE}/yaml_user/profile", user_config(), retain=True)
        rec.wait_for(lambda r: bool(r.on(f"{BASE}/yaml_user/error")), 10, "the YAML refusal")
        assert "YAML" in rec.on(f"{BASE}/yaml_user/error")[-1].json()["reason"]

        # max_users: 2 over MQTT; the third is refused.
        publish(broker.port, f"{BASE}/kim/profile", user_config(name="Kim"), retain=True)
        publish(broker.port, f"{BASE}/lee/profile", user_config(name="Lee"), retain=True)
        rec.wait_for(lambda r: bool(r.on(f"{BASE}/lee/error")), 10, "the max_users refusal")
        assert "max_users" in rec.on(f"{BASE}/lee/error")[-1].json()["reason"]
        rec.wait_for(lambda r: bool(r.on(f"{BASE}/kim/state")), 10, "kim's state")
        svc.stop()

        # A broker that has lost every retained message (a new one, same port): the store
        # still knows Robin and Kim.
        broker.close()
        fresh = mosquitto_factory(port=broker.port, persistence=False)
        rec.stop()
        rec = Recorder(fresh.host, fresh.port, [f"{BASE}/#"]).start()
        svc.start().wait_log("connected to", 15)
        # Announced from the store: their state is on the new broker, retained.
        rec.wait_for(
            lambda r: bool(r.on(f"{BASE}/robin/state")) and bool(r.on(f"{BASE}/kim/state")),
            10,
            "robin's and kim's state",
        )
        late = Recorder(fresh.host, fresh.port, [f"{BASE}/+/state"]).start()
        try:
            late.wait_for(lambda r: len(r.on(f"{BASE}/+/state")) >= 3, 5, "retained states")
            users = {m.topic.split("/")[1] for m in late.on(f"{BASE}/+/state") if m.retain}
            assert users == {"robin", "kim", "yaml_user"}
        finally:
            late.stop()
        assert not rec.on(f"{BASE}/lee/state")  # refused, never set up

        # An empty retained profile removes Robin: discovery removed, state cleared.
        rec.stop()
        rec = Recorder(
            fresh.host, fresh.port, [f"{BASE}/#", "homeassistant/device/+/config"]
        ).start()
        publish(fresh.port, f"{BASE}/robin/profile", b"", retain=True)
        svc.wait_log("user robin removed", 10)
        rec.wait_for(
            lambda r: any(
                m.payload == b"" for m in r.on("homeassistant/device/recovery_coach_robin/config")
            ),
            10,
            "robin's discovery removed",
        )
        publish(fresh.port, f"{BASE}/robin/workout/completed", workout())
        rec.wait_for(lambda r: bool(r.on(f"{BASE}/robin/error")), 10, "robin is gone")
        assert "not a configured user" in rec.on(f"{BASE}/robin/error")[-1].json()["reason"]
    finally:
        svc.close()
        rec.stop()


def test_only_home_assistants_account_may_publish_a_profile(
    mosquitto_factory: BrokerFactory,
) -> None:
    acl = (REPO_ROOT / "config" / "mosquitto" / "acl").read_text()
    passwords = {"recovery_coach": "svc", "homeassistant": "ha", "alex": "alex"}
    broker = mosquitto_factory(users=passwords, acl=acl)
    topic = f"{BASE}/alex/profile"
    # A person's own device may not set (or change) who that person is...
    assert refused_publish(broker, "alex", "alex", topic, user_config(weight_kg=300))
    # ...while Home Assistant may, and the service's account reads it.
    assert not refused_publish(broker, "homeassistant", "ha", topic, user_config())
    publish(broker.port, topic, user_config(), username="homeassistant", password="ha", retain=True)
    rec = Recorder(broker.host, broker.port, [topic], "recovery_coach", "svc").start()
    try:
        rec.wait_for(lambda r: bool(r.on(topic)), 5, "the retained profile")
    finally:
        rec.stop()
