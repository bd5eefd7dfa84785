"""Did a tool do the whole job? Each host's files and event log read back through `docker exec`,
compared with what ccie-remote renders; and the SSH logins and commands sshd logged for a run.

Nothing here goes through SSH, so reading the hosts adds nothing to sshd's log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from tools import MARKER_DIRS, PASSPHRASE

from ccie_remote import inventory, render
from ccie_remote.inventory import Fleet
from ccie_remote.lab import Lab, LabEvent, LabHost

T = TypeVar("T")

READ = (
    render.ENVIRONMENT,
    render.REPLICATED_CONF,
    render.REPLICATED_DEFAULT,
    render.DOCKER_DROPIN,
    "/var/lib/lab/init-services.json",
    "/var/lib/lab/init-builder.json",
)
INSTALLERS = ("init-services", "init-builder")
RESTART_ORDER = [
    ("replicated", "stop"),
    ("replicated-agent", "stop"),
    ("replicated-agent", "start"),
    ("replicated", "start"),
]


class JobNotDone(Exception):
    """A tool left the fleet other than `fab provision` would have: its timing is worthless."""


@dataclass
class Snapshot:
    """One host as a tool left it: file texts, their change times, and its event log."""

    host: LabHost
    files: dict[str, str | None]
    ctimes: dict[str, str]
    events: list[LabEvent]

    def installer_events(self, action: str) -> list[LabEvent]:
        return [e for e in self.events if e.source in INSTALLERS and e.action == action]


@dataclass
class Counts:
    """SSH logins and remote commands sshd logged on each host during one run."""

    logins: dict[str, int] = field(default_factory=dict)
    commands: dict[str, int] = field(default_factory=dict)
    command_times: dict[str, list[float]] = field(default_factory=dict)


def in_parallel(work: Callable[[LabHost], T], hosts: list[LabHost]) -> list[T]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(work, hosts))


def ssh_hosts(lab: Lab) -> list[LabHost]:
    return [host for host in lab.hosts if host.ssh_port is not None]


# --- reading the hosts ----------------------------------------------------------------------


def snapshot_script() -> str:
    markers = " ".join(f"{folder}/installed-*" for folder in MARKER_DIRS.values())
    return "\n".join(
        [
            f"for f in {' '.join(READ)} {markers}; do",
            '  if [ -f "$f" ]; then echo "=file $f $(stat -c %z "$f" | tr " " _)"; base64 "$f";',
            '  echo "=end"; fi',
            "done",
            "echo =events",
            "cat /var/log/lab/events.log 2>/dev/null || true",
        ]
    )


def snapshot(lab: Lab, host: LabHost) -> Snapshot:
    output = lab.exec(host.container, snapshot_script()).stdout
    files: dict[str, str | None] = dict.fromkeys(READ)
    ctimes: dict[str, str] = {}
    current: str | None = None
    chunks: list[str] = []
    lines = iter(output.splitlines())
    for line in lines:
        if line == "=events":
            break
        if current is not None and line == "=end":
            files[current] = base64.b64decode("".join(chunks)).decode("utf-8")
            current, chunks = None, []
        elif current is not None:
            chunks.append(line)
        elif line.startswith("=file "):
            _, current, ctime = line.split()
            ctimes[current] = ctime
    events = [LabEvent.parse(line) for line in lines if line.strip()]
    return Snapshot(host, files, ctimes, events)


def snapshots(lab: Lab) -> list[Snapshot]:
    return in_parallel(lambda host: snapshot(lab, host), ssh_hosts(lab))


def count_ssh(lab: Lab, since: float, until: float) -> Counts:
    """Logins and commands in each host's sshd log between SINCE and UNTIL (epoch seconds)."""
    counts = Counts()

    def read(host: LabHost) -> None:
        log = sshd_log(host, since, until)
        counts.logins[host.container] = sum("Accepted publickey for " in line for _, line in log)
        starts = [stamp for stamp, line in log if "Starting session: " in line]
        counts.commands[host.container] = len(starts)
        counts.command_times[host.container] = starts

    in_parallel(read, ssh_hosts(lab))
    return counts


def sshd_log(host: LabHost, since: float, until: float | None = None) -> list[tuple[float, str]]:
    """sshd's log lines of HOST between SINCE and UNTIL, each with its epoch time."""
    window = ["--since", f"{since:.6f}"] + (["--until", f"{until:.6f}"] if until else [])
    result = subprocess.run(
        ["docker", "logs", "--timestamps", *window, host.container],
        capture_output=True,
        text=True,
        check=True,
    )
    found = []
    for line in (result.stdout + result.stderr).splitlines():
        stamp, _, message = line.partition(" ")
        found.append((epoch(stamp), message))
    return found


def epoch(stamp: str) -> float:
    """Docker's RFC 3339 UTC timestamp (nanoseconds) as epoch seconds."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    moment = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return moment.timestamp() + float(f"0.{fraction or 0}")


# --- what must hold -------------------------------------------------------------------------


def check_values(fleet: Fleet, found: list[Snapshot]) -> list[str]:
    """Every host carries the inventory's settings, as ccie-remote renders them."""
    problems: list[str] = []
    wanted_env = render.environment_values(fleet)
    wanted_opts = set(daemon_options(render.replicated_default(fleet, None)))
    for snap in found:
        name = snap.host.container
        text = snap.files[render.ENVIRONMENT] or ""
        values = render.parse_environment(text)
        for key, value in wanted_env.items():
            if values.get(key) != value:
                problems.append(f"{name}: /etc/environment {key}={values.get(key)!r}")
        if snap.host.role == "services":
            problems += services_values(snap, fleet, wanted_opts)
        elif snap.host.docker and snap.files[render.DOCKER_DROPIN] != render.docker_dropin(fleet):
            problems.append(f"{name}: Docker's drop-in is not ccie-remote's text")
    return problems


def services_values(snap: Snapshot, fleet: Fleet, wanted_opts: set[str]) -> list[str]:
    name = snap.host.container
    problems = []
    conf = json.loads(snap.files[render.REPLICATED_CONF] or "{}")
    if conf.get("HttpProxy") != fleet.proxy.http.url:
        problems.append(f"{name}: /etc/replicated.conf HttpProxy={conf.get('HttpProxy')!r}")
    default = snap.files[render.REPLICATED_DEFAULT] or ""
    opts = daemon_options(default)
    if set(opts) != wanted_opts or len(opts) != len(wanted_opts):
        problems.append(f"{name}: /etc/default/replicated has {opts}, not {sorted(wanted_opts)}")
    return problems


def daemon_options(text: str) -> list[str]:
    """The NAME=VALUE of each `-e` option in /etc/default/replicated's text."""
    return re.findall(r"-e (\S+?)[\"'\s]", text)


def check_first(fleet: Fleet, found: list[Snapshot]) -> list[str]:
    """After a first provision: the values, each installer run once, services box first."""
    problems = check_values(fleet, found)
    services = next(s for s in found if s.host.role == "services")
    finished = services.installer_events("finished")
    if len(finished) != 1 or len(services.installer_events("start")) != 1:
        problems.append(f"{services.host.container}: services installer ran {len(finished)} times")
    record = json.loads(services.files["/var/lib/lab/init-services.json"] or "{}")
    if record.get("proxy_used") != fleet.proxy.http.url:
        problems.append(f"services installer used proxy {record.get('proxy_used')!r}")
    digest = hashlib.sha256(PASSPHRASE.encode()).hexdigest()
    for snap in found:
        if snap.host.role != "builder":
            continue
        name = snap.host.container
        starts = snap.installer_events("start")
        if len(starts) != 1 or len(snap.installer_events("finished")) != 1:
            problems.append(f"{name}: builder installer started {len(starts)} times")
            continue
        if finished and starts[0].time < finished[0].time:
            problems.append(f"{name}: builder installer started before the services box's ended")
        builder = json.loads(snap.files["/var/lib/lab/init-builder.json"] or "{}")
        if builder.get("passphrase_sha256") != digest:
            problems.append(f"{name}: builder installer did not get the passphrase")
        if builder.get("services_private_ip") != fleet.services.private_ip:
            problems.append(f"{name}: builder installer got the wrong SERVICES_PRIVATE_IP")
    return problems


def check_unchanged(before: list[Snapshot], after: list[Snapshot]) -> list[str]:
    """A no-change rerun: no file written (same text, same change time), nothing restarted."""
    problems = []
    for old, new in zip(before, after, strict=True):
        name = old.host.container
        for path in sorted(set(old.ctimes) | set(new.ctimes)):
            if old.ctimes.get(path) != new.ctimes.get(path):
                problems.append(f"{name}: {path} was written")
        added = new.events[len(old.events) :]
        problems += [f"{name}: {e.source} {e.action}" for e in added]
    return problems


def check_change(fleet: Fleet, before: list[Snapshot], after: list[Snapshot]) -> list[str]:
    """After a proxy change: the new values, replicated and Docker restarted in order with
    them, and no installer run again."""
    problems = check_values(fleet, after)
    url = fleet.proxy.http.url
    for old, new in zip(before, after, strict=True):
        name = new.host.container
        added = new.events[len(old.events) :]
        if any(e.source in INSTALLERS for e in added):
            problems.append(f"{name}: an installer ran again")
        if new.host.role == "services":
            restart = [e for e in added if e.source.startswith("replicated")]
            steps = [(e.source, e.action) for e in restart]
            if steps != RESTART_ORDER:
                problems.append(f"{name}: replicated restarts were {steps}")
            elif restart[-1].fields.get("HTTP_PROXY") != url:
                problems.append(f"{name}: replicated started with {restart[-1].fields}")
        elif new.host.docker:
            restarts = [e for e in added if e.source == "docker" and e.action == "restart"]
            if len(restarts) != 1 or restarts[0].fields.get("HTTP_PROXY") != url:
                problems.append(f"{name}: docker restarts {[e.fields for e in restarts]}")
    return problems


def builder_concurrency(found: list[Snapshot], counts: Counts) -> tuple[float, float]:
    """How concurrently the builders were provisioned on a first run.

    The start spread: how far apart the builders got their first command once the services
    box's installer had finished (0 when all began at once; a tool working in batches or one
    builder at a time spreads them over seconds). The overlap: how many builder installers
    ran at once on average (their summed run time over the span from the first start to the
    last end; the number of builders when all ran side by side, 1 when one ran after another).
    """
    services = next(s for s in found if s.host.role == "services")
    ready = max(e.time for e in services.installer_events("finished"))
    firsts, runs = [], []
    for snap in found:
        if snap.host.role != "builder":
            continue
        after = [t for t in counts.command_times.get(snap.host.container, []) if t >= ready]
        if after:
            firsts.append(min(after))
        start, end = snap.installer_events("start"), snap.installer_events("finished")
        if start and end:
            runs.append((start[0].time, end[0].time))
    if not firsts or not runs:
        return float("nan"), 0.0
    span = max(end for _, end in runs) - min(start for start, _ in runs)
    overlap = sum(end - start for start, end in runs) / span if span > 0 else float(len(runs))
    return max(firsts) - min(firsts), overlap


def fail_if(problems: list[str], tool: str, what: str, output: Path) -> None:
    if problems:
        shown = "\n  ".join(problems[:20])
        raise JobNotDone(f"{tool} did not do the job ({what}); see {output}:\n  {shown}")


def load_fleet(path: Path) -> Fleet:
    return inventory.load(path)
