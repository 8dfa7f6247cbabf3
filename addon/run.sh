#!/bin/sh
# The add-on's start: turn the Supervisor's MQTT service, its time zone and the add-on's
# options into a service config under /data, then run the service in place of this shell
# (so the Supervisor's SIGTERM reaches it and it stops cleanly).
set -eu
recovery-coach addon-config --options /data/options.json --out /data/config.json
exec recovery-coach run --config /data/config.json
