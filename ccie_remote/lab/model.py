"""What a running lab is: its hosts, its files, and how tests look inside it."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from ccie_remote.errors import LabError
from ccie_remote.lab.docker import docker, last_line

SSH_USER = "ubuntu"
PROXY_LOG = "/var/log/tinyproxy/lab.log"
WEB_LOG = "/var/log/lab/web.log"
EVENTS_LOG = "/var/log/lab/events.log"

# tinyproxy logs a connection, then its request, both naming the connection's descriptor.
CONNECT_LINE = re.compile(r"Connect \(file descriptor (?P<fd>\d+)\): (?P<client>\S+)")
REQUEST_LINE = re.compile(
    r"Request \(file descriptor (?P<fd>\d+)\): (?P<method>[A-Z]+) (?P<target>\S+)"
)


@dataclass
class LabHost:
    """One lab container: a services box, a builder, the proxy or the web (outside world)."""

    role: str
    container: str
    ssh_port: int | None
    fleet_ip: str | None
    docker: bool = False


@dataclass(frozen=True)
class LabEvent:
    """One line of a host's /var/log/lab/events.log: an install, a start, a stop, a reload."""

    time: float
    host: str
    source: str
    action: str
    fields: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, line: str) -> LabEvent:
        """Read `EPOCH.NS HOST SOURCE ACTION KEY=VALUE...` as written by lab-event."""
        parts = line.split()
        if len(parts) < 4:
            raise LabError(f"unreadable lab event line: {line!r}")
        fields = dict(part.partition("=")[::2] for part in parts[4:])
        return cls(float(parts[0]), parts[1], parts[2], parts[3], fields)


@dataclass(frozen=True)
class ProxyRequest:
    """One request the proxy took: who asked (a fleet address), the method and the URL."""

    client: str
    method: str
    target: str


def proxy_requests(log: str) -> list[ProxyRequest]:
    """Pair tinyproxy's Connect and Request lines into requests, oldest first."""
    clients: dict[str, str] = {}
    found = []
    for line in log.splitlines():
        if connect := CONNECT_LINE.search(line):
            clients[connect["fd"]] = connect["client"]
        elif (request := REQUEST_LINE.search(line)) and request["fd"] in clients:
            client = clients.pop(request["fd"])
            found.append(ProxyRequest(client, request["method"], request["target"]))
    return found


@dataclass(frozen=True)
class SshResult:
    """What a command run over SSH as ubuntu printed, and its exit status."""

    exited: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exited == 0


@dataclass
class Lab:
    """A running lab: the hosts, the inventory written for them and the key that logs in."""

    name: str
    inventory_path: Path
    key_file: Path
    known_hosts: Path
    corporate: bool
    hosts: list[LabHost]

    def services(self) -> LabHost:
        """The services box."""
        return self.by_role("services")[0]

    def builders(self) -> list[LabHost]:
        """The builders, in the order of the inventory."""
        return [host for host in self.hosts if host.role == "builder"]

    def proxy(self) -> LabHost:
        """The proxy container (tinyproxy on 3128)."""
        return self.by_role("proxy")[0]

    def web(self) -> LabHost:
        """The web container: vendor.lab.test outside, s3.lab.test on the fleet network."""
        return self.by_role("web")[0]

    def by_role(self, role: str) -> list[LabHost]:
        """The hosts of ROLE; LabError when the lab has none."""
        found = [host for host in self.hosts if host.role == role]
        if not found:
            raise LabError(f"lab {self.name} has no {role} host")
        return found

    def exec(
        self,
        container: str,
        command: str,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run COMMAND with `sh -c` as root in CONTAINER and return its text output."""
        interactive = ["--interactive"] if input is not None else []
        result = docker(
            "exec", *interactive, container, "sh", "-c", command, check=False, input=input
        )
        if check and result.returncode != 0:
            output = last_line(result.stderr or result.stdout)
            raise LabError(f"{container}: `{command}` exited {result.returncode}: {output}")
        return result

    def proxy_log(self) -> str:
        """The proxy's request log: tinyproxy names each client and each requested URL."""
        return self.exec(self.proxy().container, f"cat {PROXY_LOG}").stdout

    def proxy_requests(self) -> list[ProxyRequest]:
        """The requests in the proxy's log: client address, method and URL (or host:port)."""
        return proxy_requests(self.proxy_log())

    def web_log(self) -> str:
        """The web container's request log: one line per request, starting with the client."""
        return self.exec(self.web().container, f"cat {WEB_LOG}").stdout

    def events(self, container: str | None = None) -> list[LabEvent]:
        """Events of one container, or of every services box and builder, oldest first."""
        containers = [container] if container else [h.container for h in self.hosts if h.ssh_port]
        found: list[LabEvent] = []
        for name in containers:
            text = self.exec(name, f"cat {EVENTS_LOG} 2>/dev/null || true").stdout
            found += [LabEvent.parse(line) for line in text.splitlines() if line.strip()]
        return sorted(found, key=lambda event: event.time)

    def ssh(
        self, host: LabHost, command: str, pty: bool = False, timeout: float = 60
    ) -> SshResult:
        """Run COMMAND as ubuntu over SSH with the lab key, the host key checked strictly."""
        if host.ssh_port is None:
            raise LabError(f"{host.container} has no SSH port")
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                "127.0.0.1",
                port=host.ssh_port,
                username=SSH_USER,
                key_filename=str(self.key_file),
                look_for_keys=False,
                allow_agent=False,
                timeout=10,
            )
            _, stdout, stderr = client.exec_command(command, get_pty=pty, timeout=timeout)
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            return SshResult(stdout.channel.recv_exit_status(), out, err)
        except (OSError, paramiko.SSHException) as error:
            where = f"{host.container} (127.0.0.1:{host.ssh_port})"
            raise LabError(f"{where}: SSH as {SSH_USER} failed: {error}") from None
        finally:
            client.close()
