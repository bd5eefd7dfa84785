"""Reading a host's state in one round trip: its managed files and the facts the steps need."""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass, field

from ccie_remote import render
from ccie_remote.errors import HostError
from ccie_remote.inventory import Host
from ccie_remote.remote.shell import Remote

STATE_DIR = "/var/lib/ccie-remote"
BACKUP_DIR = f"{STATE_DIR}/backups"
LAST_BACKUP = f"{BACKUP_DIR}/last"
INSTALLER_ENV = f"{STATE_DIR}/installer.env"


def installed_marker(role: str) -> str:
    """The file recording that ccie-remote ran this role's installer successfully."""
    return f"{STATE_DIR}/installed-{role}"


@dataclass(frozen=True)
class HostState:
    """What a host holds now: each managed file's text (None when absent) and some facts."""

    files: dict[str, str | None]
    facts: dict[str, str] = field(default_factory=dict)

    def fact(self, name: str) -> bool:
        return self.facts.get(name) == "yes"

    @property
    def installed(self) -> bool:
        """The role's installer has run: recorded by us, or replicated found on a services box."""
        return self.fact("installed")

    @property
    def replicated_installed(self) -> bool:
        return self.fact("replicated")


# Each fact is a shell test; its output is "yes" or "no".
_FACTS = {
    "replicated": "[ -x /etc/init.d/replicated ] || [ -e /etc/systemd/system/replicated.service ]"
    " || [ -e /lib/systemd/system/replicated.service ]",
    "systemd": "[ -d /run/systemd/system ]",
    "docker": "[ -x /etc/init.d/docker ] || [ -e /lib/systemd/system/docker.service ]"
    " || [ -e /etc/systemd/system/docker.service ]"
    " || [ -e /usr/lib/systemd/system/docker.service ]",
    "backup": f"[ -f {LAST_BACKUP}/MANIFEST ]",
}


def read_script(host: Host, paths: list[str], cleanup: bool = False) -> str:
    """A POSIX sh script printing the files (base64) and facts between marker lines.

    With ``cleanup`` it first deletes the installer's environment file, which survives only
    when a run was cut off between writing and using it (read-only commands leave it).
    """
    lines = [f"rm -f {INSTALLER_ENV}"] if cleanup else []
    lines += [
        f"for f in {' '.join(shlex.quote(p) for p in paths)}; do",
        '  if [ -f "$f" ]; then echo "=file $f"; base64 < "$f"; echo "=end";',
        '  else echo "=absent $f"; fi',
        "done",
    ]
    facts = dict(_FACTS)
    role = "services" if host.role == "services" else "builder"
    facts["installed"] = f"[ -f {installed_marker(role)} ]"
    if host.role == "services":
        facts["installed"] += f" || {_FACTS['replicated']}"
    for name, test in facts.items():
        lines.append(f"if {test}; then echo '=fact {name} yes'; else echo '=fact {name} no'; fi")
    return "\n".join(lines) + "\n"


def parse_state(host_name: str, output: str) -> HostState:
    files: dict[str, str | None] = {}
    facts: dict[str, str] = {}
    current: str | None = None
    chunks: list[str] = []
    for line in output.splitlines():
        if current is not None:
            if line == "=end":
                files[current] = _decode(host_name, current, "".join(chunks))
                current, chunks = None, []
            else:
                chunks.append(line.strip())
        elif line.startswith("=file "):
            current = line[len("=file ") :]
        elif line.startswith("=absent "):
            files[line[len("=absent ") :]] = None
        elif line.startswith("=fact "):
            _, name, value = line.split(" ", 2)
            facts[name] = value
    if current is not None or "installed" not in facts:
        raise HostError(host_name, "could not read the host's state (output cut short)")
    return HostState(files, facts)


def _decode(host_name: str, path: str, encoded: str) -> str:
    try:
        return base64.b64decode(encoded).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise HostError(host_name, f"{path} is not UTF-8 text; left untouched") from None


def managed_paths(host: Host) -> list[str]:
    return [managed.path for managed in render.managed_files(host)]


def read_state(remote: Remote, host: Host, cleanup: bool = False) -> HostState:
    """Read the host's managed files and facts with one command."""
    script = read_script(host, managed_paths(host), cleanup)
    result = remote.root(script, label="read the managed files", check=False)
    if result.exited != 0 and "password is required" in result.stderr:
        raise HostError(
            remote.name,
            "sudo asks for a password; ccie-remote needs passwordless sudo for the SSH user "
            "(a NOPASSWD rule in /etc/sudoers.d)",
        )
    if result.exited != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-3:])
        raise HostError(remote.name, f"reading the managed files failed ({result.exited}): {tail}")
    return parse_state(remote.name, result.stdout)
