"""What the end-to-end tests share: running `fab` as a user would, and reading hosts back."""

from __future__ import annotations

import datetime
import hashlib
import os
import subprocess
import sys
from pathlib import Path

from ccie_remote.lab import Lab, LabHost

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "lab-passphrase-7f3a9c"
MANAGED = (
    "/etc/environment",
    "/etc/replicated.conf",
    "/etc/default/replicated",
    "/etc/systemd/system/docker.service.d/http-proxy.conf",
)


def fab(
    *args: str, passphrase: str | None = PASSPHRASE, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `fab ARGS` from the repository, stdin closed (no terminal), as CI would."""
    env = {k: v for k, v in os.environ.items() if k != "CIRCLE_SECRET_PASSPHRASE"}
    if passphrase is not None:
        env["CIRCLE_SECRET_PASSPHRASE"] = passphrase
    return subprocess.run(
        [sys.executable, "-m", "fabric", *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fingerprints(lab: Lab, host: LabHost) -> dict[str, str]:
    """sha256 of each managed file on HOST ("absent" when it does not exist)."""
    script = "; ".join(
        f"if [ -f {p} ]; then sha256sum {p}; else echo absent {p}; fi" for p in MANAGED
    )
    found = {}
    for line in lab.exec(host.container, script).stdout.splitlines():
        digest, path = line.split()
        found[path] = digest
    return found


def read(lab: Lab, host: LabHost, path: str) -> str:
    return lab.exec(host.container, f"cat {path}").stdout


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def summary_rows(output: str) -> dict[str, list[str]]:
    """The summary table's rows by host: role, result, seconds, why."""
    rows = {}
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("HOST "))
    for line in lines[start + 1 :]:
        if not line.startswith(("127.", "[")):
            break
        host, role, result, seconds, *why = line.split()
        rows[host] = [role, result, seconds, " ".join(why)]
    return rows


def ssh_counts(container: str, since: str) -> tuple[int, int]:
    """SSH connections and remote commands sshd logged for CONTAINER since the RFC 3339 time."""
    log = subprocess.run(
        ["docker", "logs", "--since", since, container], capture_output=True, text=True, check=True
    )
    lines = (log.stdout + log.stderr).splitlines()
    connections = sum("Accepted publickey for" in line for line in lines)
    commands = sum("Starting session:" in line for line in lines)
    return connections, commands


def now() -> str:
    """The current time as `docker logs --since` takes it."""
    return datetime.datetime.now(datetime.UTC).isoformat()
