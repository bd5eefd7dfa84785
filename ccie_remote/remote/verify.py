"""Proof that every consumer on a host uses the proxy, and bypasses it where it must.

One script per host gathers the evidence in a single round trip, run as the login user so it
sees the environment pam_env builds from /etc/environment (root-only files are read through
``sudo -n`` inside it). ``evaluate`` turns that evidence into checks: a pure function.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from dataclasses import dataclass

from ccie_remote import bypass, render
from ccie_remote.bypass import Entry
from ccie_remote.inventory import Fleet, Host

METADATA_URL = "http://169.254.169.254/latest/meta-data/instance-id"
CONSOLE_PORT = 8800
FLEET_SSH_PORT = 22  # fleet machines are probed on their private address, where sshd listens


@dataclass(frozen=True)
class Check:
    host: str
    name: str
    ok: bool
    detail: str


def bypass_targets(fleet: Fleet, host: Host) -> list[str]:
    """Private addresses of other fleet machines that the bypass list names."""
    listed = set(bypass.entries(fleet))
    return [
        other.private_ip
        for other in fleet.hosts
        if other != host
        and other.private_ip != host.private_ip
        and Entry.parse(other.private_ip) in listed
    ]


def evidence_script(fleet: Fleet, host: Host, url: str) -> str:
    """A sh script, run as the login user, printing ``=kind key value`` evidence lines."""
    proxy = fleet.proxy.http
    lines = [
        "for n in " + " ".join(render.MANAGED_NAMES) + "; do",
        '  if v=$(printenv "$n"); then printf "=env %s %s\\n" "$n" "$v";',
        '  else printf "=unset %s\\n" "$n"; fi',
        "done",
        f"if timeout 5 bash -c 'exec 3<>/dev/tcp/{proxy.host}/{proxy.port}' 2>/dev/null;"
        " then echo '=proxy_tcp ok'; else echo '=proxy_tcp failed'; fi",
        f"code=$(curl -sS -o /dev/null -w '%{{http_code}}' --max-time 20 {shlex.quote(url)}"
        " 2>&1) || true",
        'printf "=fetch %s\\n" "$(echo "$code" | tr "\\n" " ")"',
    ]
    for address in bypass_targets(fleet, host):
        lines += _route_probe(f"bypass:{address}", f"http://{address}:{FLEET_SSH_PORT}/")
    if fleet.proxy.ec2:
        lines += _route_probe("metadata", METADATA_URL, connect_timeout=1)
    files = [render.REPLICATED_CONF] if host.role == "services" else []
    if host.docker:
        files.append(render.DOCKER_DROPIN)
    for path in files:
        lines += [
            f"if sudo -n test -f {path}; then echo '=file {path}';",
            f"  sudo -n cat {path} | base64; echo '=end';",
            f"else echo '=absent {path}'; fi",
        ]
    if host.docker:
        lines += [
            "if [ -d /run/systemd/system ]; then",
            "  printf '=docker_env %s\\n' \"$(systemctl show --property=Environment docker)\"",
            "fi",
        ]
    if host.role == "services":
        for service in ("replicated", "replicated-agent"):
            lines.append(
                f"if sudo -n service {service} status >/dev/null 2>&1;"
                f" then echo '=service:{service} running';"
                f" else echo '=service:{service} stopped'; fi"
            )
        lines.append(
            f"if timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/{CONSOLE_PORT}' 2>/dev/null;"
            " then echo '=console listening'; else echo '=console closed'; fi"
        )
    return "\n".join(lines) + "\n"


def _route_probe(key: str, url: str, connect_timeout: int = 3) -> list[str]:
    """curl's own decision for ``url`` with the login environment: through the proxy or not."""
    return [
        f"out=$(curl -v --connect-timeout {connect_timeout} --max-time {connect_timeout + 2} "
        f"-o /dev/null {shlex.quote(url)} 2>&1 || true)",
        'if echo "$out" | grep -Eiq "Uses proxy env variable https?_proxy"; then '
        f"echo '={key} proxied';",
        f'elif echo "$out" | grep -q "^\\* Connected to"; then echo \'={key} direct\';',
        f"else echo '={key} unreached'; fi",
    ]


@dataclass
class Evidence:
    env: dict[str, str | None]
    facts: dict[str, str]
    files: dict[str, str | None]


def parse_evidence(output: str) -> Evidence:
    evidence = Evidence({}, {}, {})
    current: str | None = None
    chunks: list[str] = []
    for line in output.splitlines():
        if current is not None:
            if line == "=end":
                evidence.files[current] = base64.b64decode("".join(chunks)).decode("utf-8")
                current, chunks = None, []
            else:
                chunks.append(line.strip())
            continue
        if line.startswith("=env "):
            _, name, value = (line + " ").split(" ", 2)
            evidence.env[name] = value[:-1] if value.endswith(" ") else value
        elif line.startswith("=unset "):
            evidence.env[line.split(" ", 1)[1]] = None
        elif line.startswith("=file "):
            current = line.split(" ", 1)[1]
        elif line.startswith("=absent "):
            evidence.files[line.split(" ", 1)[1]] = None
        elif line.startswith("="):
            key, _, value = line[1:].partition(" ")
            evidence.facts[key] = value.strip()
    return evidence


def evaluate(fleet: Fleet, host: Host, evidence: Evidence, url: str) -> list[Check]:
    """Every check for ``host``; each failed one says what to do about it."""
    checks: list[Check] = []

    def check(name: str, ok: bool, detail: str, fix: str = "") -> None:
        checks.append(Check(host.name, name, ok, detail if ok or not fix else f"{detail}; {fix}"))

    expected = render.environment_values(fleet)
    provision = f"run `fab provision --inventory {fleet.path} --only {host.name}`"

    # The proxy variables, as a login session gets them.
    for upper in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        lower = upper.lower()
        got_upper, got_lower = evidence.env.get(upper), evidence.env.get(lower)
        if got_upper is None or got_lower is None:
            missing = upper if got_upper is None else lower
            check(f"env {upper}", False, f"{missing} is not set in a login session", provision)
        elif got_upper != got_lower:
            check(f"env {upper}", False, f"{upper} and {lower} disagree", provision)
        elif got_upper != expected[upper]:
            check(f"env {upper}", False, f"{got_upper} does not match the inventory", provision)
        else:
            check(f"env {upper}", True, got_upper)

    jvm = evidence.env.get("JVM_OPTS")
    if jvm != expected["JVM_OPTS"]:
        why = "not set" if jvm is None else "differs from the inventory's proxy and bypass list"
        check("JVM_OPTS", False, f"JVM_OPTS {why}", provision)
    else:
        check("JVM_OPTS", True, "proxy host, port and nonProxyHosts match")

    if host.role == "services":
        checks.extend(_replicated_checks(fleet, host, evidence, provision))
    if host.docker:
        checks.extend(_docker_checks(fleet, host, evidence, provision))

    tcp = evidence.facts.get("proxy_tcp") == "ok"
    proxy = fleet.proxy.http
    check(
        "proxy answers",
        tcp,
        f"TCP connect to {proxy.host_port} {'succeeded' if tcp else 'failed'}",
        "check that the proxy runs and that this host's firewall and routes reach it",
    )
    code = evidence.facts.get("fetch", "").strip()
    fetched = bool(re.fullmatch(r"[23]\d\d", code))
    check(
        "fetch through proxy",
        fetched,
        f"GET {url} -> {code or 'no answer'}",
        "the proxy must allow this URL (see its access log); try again with --url",
    )
    for address in bypass_targets(fleet, host):
        route = evidence.facts.get(f"bypass:{address}", "unreached")
        check(
            f"bypass {address}",
            route == "direct",
            f"{address} reached {route}",
            "NO_PROXY must name it and the host must route to it: " + provision
            if route == "proxied"
            else "check the security group or firewall between the two hosts",
        )
    if fleet.proxy.ec2:
        route = evidence.facts.get("metadata", "unreached")
        check(
            "metadata bypass",
            route != "proxied",
            "169.254.169.254 would go through the proxy"
            if route == "proxied"
            else "169.254.169.254 is not proxied",
            "a proxied metadata call returns the proxy host's identity: " + provision,
        )
    return checks


def _replicated_checks(fleet: Fleet, host: Host, evidence: Evidence, fix: str) -> list[Check]:
    checks = []
    text = evidence.files.get(render.REPLICATED_CONF)
    try:
        proxy = json.loads(text).get("HttpProxy") if text else None
    except (ValueError, AttributeError):
        proxy = None
    ok = proxy == fleet.proxy.http.url
    detail = (
        "HttpProxy matches the environment"
        if ok
        else (
            f"HttpProxy is {proxy!r}, the environment says {fleet.proxy.http.masked}"
            if text
            else f"{render.REPLICATED_CONF} is missing"
        )
    )
    checks.append(Check(host.name, "replicated.conf", ok, detail if ok else f"{detail}; {fix}"))
    for service in ("replicated", "replicated-agent"):
        running = evidence.facts.get(f"service:{service}") == "running"
        detail = (
            "running"
            if running
            else (f"not running; start it with `sudo service {service} start`, or {fix}")
        )
        checks.append(Check(host.name, f"{service} running", running, detail))
    listening = evidence.facts.get("console") == "listening"
    checks.append(
        Check(
            host.name,
            "console on 8800",
            listening,
            "listening on the loopback"
            if listening
            else ("nothing listens on port 8800; check `sudo service replicated status`"),
        )
    )
    return checks


def _docker_checks(fleet: Fleet, host: Host, evidence: Evidence, fix: str) -> list[Check]:
    shown = evidence.facts.get("docker_env")
    source = "systemctl show docker"
    if shown is None:
        shown = evidence.files.get(render.DOCKER_DROPIN) or ""
        source = render.DOCKER_DROPIN
    found = dict(re.findall(r"(HTTPS?_PROXY|NO_PROXY)=([^\s\"]+)", shown.replace("%%", "%")))
    values = render.environment_values(fleet)
    wrong = [n for n in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY") if found.get(n) != values[n]]
    ok = not wrong
    detail = (
        f"{source}: proxy and bypass list match"
        if ok
        else (f"{source}: {', '.join(wrong)} missing or different; {fix}")
    )
    return [Check(host.name, "docker daemon", ok, detail)]
