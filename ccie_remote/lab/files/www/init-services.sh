#!/usr/bin/env bash
# Stand-in for CircleCI Enterprise's init-services.sh (the Replicated installer), served by the
# ccie-remote lab. It keeps the real installer's interface:
#   - runs as root;
#   - asks "Does this machine require a proxy to access the Internet? (y/N) " and "Enter
#     desired HTTP proxy address: ", each read from /dev/tty with a 20 second timeout; without
#     an answer or a terminal the default stands: yes when it finds a proxy, and that proxy
#     (looked up in /etc/replicated.conf HttpProxy, HTTP_PROXY, http_proxy, HTTPS_PROXY,
#     https_proxy, in that order);
#   - refuses an address without http:// or https://;
#   - on yes, needs the proxy variables in its own environment (sudo without -E drops them);
#   - fetches a probe page with curl, which takes its proxy from the environment.
# Then it installs stand-in `replicated` and `replicated-agent` services, writes
# /etc/default/replicated the way the real one does, starts the Replicated console on
# 127.0.0.1:8800 and a services API on 0.0.0.0:8585 (GET /whoami answers the caller's
# address), and records what it saw in /var/lib/lab/init-services.json.
set -euo pipefail

readonly PROBE_URL="http://vendor.lab.test/probe.txt"
readonly LIB=/usr/local/lib/replicated-lab
readonly RECORD=/var/lib/lab/init-services.json
readonly PROXY_VARIABLES=(HTTP_PROXY http_proxy HTTPS_PROXY https_proxy)

event() {
    local line
    line="$(date +%s.%N) $(hostname) $*"
    mkdir -p /var/log/lab
    printf '%s\n' "$line" >> /var/log/lab/installer-events.log
    printf '%s\n' "$line" >> /var/log/lab/events.log
}

fail() {
    echo "init-services.sh: error: $*" >&2
    event init-services failed
    exit 1
}

# The proxy the real installer would offer as its default answer.
found_proxy() {
    local name configured=""
    if [[ -s /etc/replicated.conf ]]; then
        configured="$(python3 -c 'import json, sys
print(json.load(open(sys.argv[1])).get("HttpProxy", ""))' /etc/replicated.conf 2>/dev/null)" ||
            echo "init-services.sh: warning: /etc/replicated.conf is not valid JSON" >&2
    fi
    if [[ -n "$configured" ]]; then
        printf '%s' "$configured"
        return
    fi
    for name in "${PROXY_VARIABLES[@]}"; do
        if [[ -n "${!name:-}" ]]; then
            printf '%s' "${!name}"
            return
        fi
    done
}

# ask PROMPT DEFAULT: print the answer read from the terminal, or DEFAULT.
ask() {
    local answer=""
    printf '%s' "$1"
    if [[ "$HAS_TTY" == true ]] && read -r -t 20 answer < /dev/tty && [[ -n "$answer" ]]; then
        printf '%s' "$answer" > "$ANSWER_FILE"
        return
    fi
    echo "${2:-}"
    printf '%s' "${2:-}" > "$ANSWER_FILE"
}

proxy_variables_present() {
    local name
    for name in "${PROXY_VARIABLES[@]}"; do
        [[ -n "${!name:-}" ]] && return 0
    done
    return 1
}

write_console() {
    cat > "$LIB/console.py" <<'PY'
"""Stand-in Replicated console: one page on 127.0.0.1:8800."""

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = b"<html><head><title>Replicated console (ccie-remote lab)</title></head>" \
    b"<body><h1>Replicated console (ccie-remote lab)</h1></body></html>\n"


class Console(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)


ThreadingHTTPServer(("127.0.0.1", 8800), Console).serve_forever()
PY
}

write_services_api() {
    cat > "$LIB/services_api.py" <<'PY'
"""Stand-in services API on 0.0.0.0:8585: GET /whoami answers the caller's address."""

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ServicesApi(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/whoami":
            self.send_error(404)
            return
        body = (self.client_address[0] + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("0.0.0.0", 8585), ServicesApi).serve_forever()
PY
}

# The daemon's init script: sources /etc/default/replicated, as the real one does.
write_replicated_init() {
    cat > /etc/init.d/replicated <<'SH'
#!/bin/sh
### BEGIN INIT INFO
# Provides:          replicated
# Required-Start:    $remote_fs
# Required-Stop:     $remote_fs
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: Stand-in Replicated daemon and console (ccie-remote lab)
### END INIT INFO
set -eu
PIDFILE=/run/replicated.pid
REPLICATED_OPTS=""
[ -r /etc/default/replicated ] && . /etc/default/replicated

option() {
    printf '%s\n' "$REPLICATED_OPTS" | tr ' ' '\n' | sed -n "s/^$1=//p" | tail -n 1
}

running() {
    [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

start() {
    lab-event replicated-events.log replicated start "HTTP_PROXY=$(option HTTP_PROXY)" \
        "HTTPS_PROXY=$(option HTTPS_PROXY)" "NO_PROXY=$(option NO_PROXY)"
    start-stop-daemon --start --oknodo --background --make-pidfile --pidfile "$PIDFILE" \
        --startas /usr/bin/python3 -- /usr/local/lib/replicated-lab/console.py
}

stop() {
    if running; then was=yes; else was=no; fi
    lab-event replicated-events.log replicated stop "was_running=$was"
    start-stop-daemon --stop --oknodo --retry 5 --remove-pidfile --pidfile "$PIDFILE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status)
        if running; then echo "replicated is running"; else echo "replicated is stopped"; exit 3; fi
        ;;
    *) echo "Usage: service replicated {start|stop|restart|status}" >&2; exit 2 ;;
esac
SH
    chmod 0755 /etc/init.d/replicated
}

write_agent_init() {
    cat > /etc/init.d/replicated-agent <<'SH'
#!/bin/sh
### BEGIN INIT INFO
# Provides:          replicated-agent
# Required-Start:    $remote_fs
# Required-Stop:     $remote_fs
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: Stand-in Replicated agent (ccie-remote lab)
### END INIT INFO
set -eu
STATE=/run/replicated-agent.running

case "${1:-}" in
    start) lab-event replicated-events.log replicated-agent start; touch "$STATE" ;;
    stop)
        if [ -e "$STATE" ]; then was=yes; else was=no; fi
        lab-event replicated-events.log replicated-agent stop "was_running=$was"
        rm -f "$STATE"
        ;;
    restart) "$0" stop; "$0" start ;;
    status)
        if [ -e "$STATE" ]; then echo "replicated-agent is running"; else
            echo "replicated-agent is stopped"; exit 3; fi
        ;;
    *) echo "Usage: service replicated-agent {start|stop|restart|status}" >&2; exit 2 ;;
esac
SH
    chmod 0755 /etc/init.d/replicated-agent
}

# wait_for_http URL: poll a local server until it answers, for at most five seconds.
wait_for_http() {
    local tries
    for tries in $(seq 50); do
        curl --noproxy '*' -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    fail "$1 did not answer after $tries tries"
}

start_services() {
    local service
    for service in replicated-agent replicated; do
        if service "$service" status > /dev/null 2>&1; then
            service "$service" restart
        else
            service "$service" start
        fi
    done
    start-stop-daemon --start --oknodo --background --make-pidfile \
        --pidfile /run/lab-services-api.pid --startas /usr/bin/python3 \
        --output /var/log/lab/services-api.log -- "$LIB/services_api.py"
    wait_for_http http://127.0.0.1:8800/
    wait_for_http http://127.0.0.1:8585/whoami
}

write_record() {
    ANSWER_PROXY="$1" ANSWER_ADDRESS="$2" PROXY_USED="$3" HAS_TTY="$HAS_TTY" \
        python3 - "$RECORD" <<'PY'
import json
import os
import sys
import time

names = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"]
record = {
    "installer": "init-services.sh",
    "time": time.time(),
    "uid": os.getuid(),
    "tty": os.environ["HAS_TTY"] == "true",
    "answers": {
        "requires_proxy": os.environ["ANSWER_PROXY"],
        "proxy_address": os.environ["ANSWER_ADDRESS"],
    },
    "proxy_used": os.environ["PROXY_USED"] or None,
    "environment": {name: os.environ.get(name) for name in names},
}
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump(record, out, indent=2)
    out.write("\n")
PY
}

main() {
    local default_answer proxy requires address="" no_proxy
    [[ "$(id -u)" == 0 ]] || fail "must run as root (sudo -E bash init-services.sh)"
    event init-services start
    mkdir -p /var/lib/lab "$LIB"

    HAS_TTY=false
    if { : < /dev/tty; } 2> /dev/null; then HAS_TTY=true; fi
    ANSWER_FILE="$(mktemp)"
    trap 'rm -f "$ANSWER_FILE"' EXIT

    proxy="$(found_proxy)"
    default_answer=N
    [[ -n "$proxy" ]] && default_answer=y
    ask "Does this machine require a proxy to access the Internet? (y/N) " "$default_answer"
    requires="$(cat "$ANSWER_FILE")"

    if [[ "$requires" =~ ^[yY] ]]; then
        ask "Enter desired HTTP proxy address: " "$proxy"
        address="$(cat "$ANSWER_FILE")"
        [[ -n "$address" ]] || fail "no proxy address given and none found"
        [[ "$address" =~ ^https?:// ]] ||
            fail "proxy address '$address' has no scheme: enter it as <protocol>://<ip>:<port>"
        proxy_variables_present ||
            fail "the proxy was answered but HTTP_PROXY, http_proxy, HTTPS_PROXY and" \
                "https_proxy are all missing from the installer's environment" \
                "(run it as 'sudo -E bash init-services.sh')"
    fi

    curl -fsS --max-time 10 -o /dev/null "$PROBE_URL" ||
        fail "could not fetch $PROBE_URL through the proxy in the environment" \
            "(curl reads http_proxy in lowercase only for http:// URLs)"
    echo "Downloading Replicated (lab stand-in)..."
    sleep 0.5

    write_console
    write_services_api
    write_replicated_init
    write_agent_init
    no_proxy="${NO_PROXY:-${no_proxy:-}}"
    if [[ -n "$address" ]]; then
        printf 'REPLICATED_OPTS="-e HTTP_PROXY=%s -e HTTPS_PROXY=%s -e NO_PROXY=%s"\n' \
            "$address" "$address" "$no_proxy" > /etc/default/replicated
    else
        printf 'REPLICATED_OPTS=""\n' > /etc/default/replicated
    fi
    start_services

    write_record "$requires" "$address" "$address"
    event init-services finished "proxy=$address"
    echo "Replicated (lab stand-in) is running: console on 127.0.0.1:8800"
}

main "$@"
