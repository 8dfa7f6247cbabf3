"""What to tell a person when the broker will not have the service: one line, saying what
happened and what to change. Pure: the MQTT link and the command line word their logs and
messages with these."""

from __future__ import annotations

# MQTT 5 CONNACK reason codes (MQTT 3.1.1's return codes 4 and 5 are read as these).
BAD_LOGIN = 134  # Bad user name or password
NOT_AUTHORIZED = 135  # Not authorized
CLIENT_ID_REFUSED = 133  # Client identifier not valid
SESSION_TAKEN_OVER = 142  # DISCONNECT: another client connected with our client id

HA_MOSQUITTO = (
    "Home Assistant's Mosquitto broker add-on wants a login: a Home Assistant user, or one "
    "of the add-on's own logins"
)


def refusal(code: int, reason: str, username: str | None, has_password: bool) -> str:
    """The line for a refused connection (CONNACK with a failure)."""
    if code in (BAD_LOGIN, NOT_AUTHORIZED):
        if username is None:
            return (
                f"the broker refused the connection ({reason}): it wants a login. Set "
                "broker.username and broker.password_file (or the environment variable "
                f"RECOVERY_COACH_MQTT_PASSWORD) to an account of the broker; {HA_MOSQUITTO}"
            )
        if not has_password:
            return (
                f"the broker refused the login '{username}' ({reason}): no password is set. "
                "Set broker.password_file (a file holding only the password) or the "
                "environment variable RECOVERY_COACH_MQTT_PASSWORD"
            )
        return (
            f"the broker refused the login '{username}' ({reason}): check the password "
            "(broker.password_file or RECOVERY_COACH_MQTT_PASSWORD) and that the broker's "
            "password file and ACL know this account"
        )
    if code == CLIENT_ID_REFUSED:
        return (
            f"the broker refused the client id ({reason}): set broker.client_id to one it "
            "accepts (a broker with clientid_prefixes or a client id bound to a login)"
        )
    return f"the broker refused the connection ({reason})"


def taken_over(client_id: str) -> str:
    """The line for a session another client took (MQTT 5 DISCONNECT 0x8E, or, from a
    broker that says nothing, connections closed again and again seconds after they open)."""
    return (
        f"another client connected to the broker with this service's client id "
        f"'{client_id}' and took its session: is a second Recovery Coach running on the same "
        "broker (a container beside a systemd unit, an old container left running), or a "
        "device set up with this client id? Stop it, or give each its own broker.client_id"
    )


def not_mqtt(host: str, port: int, what: str) -> str:
    """The line for a broker address where something other than MQTT answers."""
    return (
        f"{host}:{port} does not answer MQTT: {what}. Set broker.port to the broker's MQTT "
        "port (1883, or 8883 with TLS)"
    )
