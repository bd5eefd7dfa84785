#!/usr/bin/env bash
# Stand-in for CircleCI Enterprise's init-builder-0.2.sh, served by the ccie-remote lab.
# It keeps the real installer's interface: runs as root, needs CIRCLE_SECRET_PASSPHRASE and
# SERVICES_PRIVATE_IP in its environment, and is usually piped into bash by curl.
# It proves what a real builder needs from its proxy settings:
#   - the services box is reached directly: GET http://$SERVICES_PRIVATE_IP:8585/whoami with
#     the environment's proxy settings must answer this builder's own fleet address (any
#     other answer means the request went through the proxy: NO_PROXY lacks the services box);
#   - the outside world is reached through the proxy: a probe page on vendor.lab.test.
# It records what it saw in /var/lib/lab/init-builder.json: the passphrase only as a sha256.
set -euo pipefail

readonly PROBE_URL="http://vendor.lab.test/probe.txt"
readonly RECORD=/var/lib/lab/init-builder.json

event() {
    local line
    line="$(date +%s.%N) $(hostname) $*"
    mkdir -p /var/log/lab
    printf '%s\n' "$line" >> /var/log/lab/installer-events.log
    printf '%s\n' "$line" >> /var/log/lab/events.log
}

fail() {
    echo "init-builder-0.2.sh: error: $*" >&2
    event init-builder failed
    exit 1
}

own_address() {
    ip -4 route get "$1" | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n 1
}

check_services_reached_directly() {
    local url="http://$SERVICES_PRIVATE_IP:8585/whoami" seen mine
    mine="$(own_address "$SERVICES_PRIVATE_IP")"
    seen="$(curl -fsS --max-time 10 "$url")" ||
        fail "could not reach the services box at $url (if it went through the proxy," \
            "NO_PROXY must include $SERVICES_PRIVATE_IP)"
    [[ "$seen" == "$mine" ]] ||
        fail "the services box saw this builder as $seen, not $mine: the request went" \
            "through the proxy (NO_PROXY must include $SERVICES_PRIVATE_IP)"
    WHOAMI="$seen"
    OWN_ADDRESS="$mine"
}

write_record() {
    WHOAMI="$WHOAMI" OWN_ADDRESS="$OWN_ADDRESS" python3 - "$RECORD" <<'PY'
import hashlib
import json
import os
import sys
import time

names = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"]
passphrase = os.environ["CIRCLE_SECRET_PASSPHRASE"].encode()
record = {
    "installer": "init-builder-0.2.sh",
    "time": time.time(),
    "uid": os.getuid(),
    "services_private_ip": os.environ["SERVICES_PRIVATE_IP"],
    "passphrase_sha256": hashlib.sha256(passphrase).hexdigest(),
    "own_address": os.environ["OWN_ADDRESS"],
    "services_saw": os.environ["WHOAMI"],
    "environment": {name: os.environ.get(name) for name in names},
}
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump(record, out, indent=2)
    out.write("\n")
PY
}

main() {
    [[ "$(id -u)" == 0 ]] || fail "must run as root"
    [[ -n "${CIRCLE_SECRET_PASSPHRASE:-}" ]] ||
        fail "CIRCLE_SECRET_PASSPHRASE is not set (the passphrase from the console's settings)"
    [[ -n "${SERVICES_PRIVATE_IP:-}" ]] ||
        fail "SERVICES_PRIVATE_IP is not set (the services box's private address)"
    event init-builder start "services=$SERVICES_PRIVATE_IP"
    mkdir -p /var/lib/lab

    check_services_reached_directly
    curl -fsS --max-time 10 -o /dev/null "$PROBE_URL" ||
        fail "could not fetch $PROBE_URL through the proxy in the environment" \
            "(curl reads http_proxy in lowercase only for http:// URLs)"
    echo "Downloading the builder (lab stand-in)..."
    sleep 0.5

    write_record
    event init-builder finished "services=$SERVICES_PRIVATE_IP"
    echo "Builder (lab stand-in) installed; services box at $SERVICES_PRIVATE_IP"
}

main "$@"
