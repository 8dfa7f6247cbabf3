"""Recovery Coach: evidence-based workout-recovery nudges over MQTT."""

__version__ = "0.1.0"
