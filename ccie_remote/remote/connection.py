"""SSH connections to fleet hosts, with the inventory's host key policy enforced.

Fabric on its own accepts any host key and never reads known_hosts, so every connection made
here (the gateway's too) gets the known_hosts file and a policy before its first connect.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection

from ccie_remote.errors import ConnectError, HostKeyError
from ccie_remote.inventory import Fleet, Host, Ssh

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10
_known_hosts_lock = threading.Lock()


def fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


class _StrictPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse a host whose key is not in known_hosts."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: Any) -> None:
        raise HostKeyError(
            hostname,
            f"unknown host key {fingerprint(key)} and host_key_policy is strict; "
            f"add it to {self.known_hosts} after checking it (ssh-keyscan, or the console)",
        )


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """Record an unknown key in known_hosts (as `ssh -o StrictHostKeyChecking=accept-new`)."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: Any) -> None:
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with _known_hosts_lock:
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with self.known_hosts.open("a", encoding="utf-8") as handle:
                handle.write(line)
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.info(
            "%s: new host key recorded in %s: %s", hostname, self.known_hosts, fingerprint(key)
        )


def _guard(connection: Connection, ssh: Ssh) -> Connection:
    """Load known_hosts into the connection's client and set the policy, before connecting."""
    client = connection.client
    if ssh.known_hosts.exists():
        try:
            client.load_host_keys(str(ssh.known_hosts))
        except (OSError, paramiko.SSHException) as error:
            raise ConnectError(
                connection.host, f"cannot read {ssh.known_hosts}: {error}"
            ) from None
    policy: paramiko.MissingHostKeyPolicy
    if ssh.host_key_policy == "strict":
        policy = _StrictPolicy(ssh.known_hosts)
    else:
        policy = _AcceptNewPolicy(ssh.known_hosts)
    client.set_missing_host_key_policy(policy)
    return connection


def _config(ssh: Ssh) -> Config:
    overrides: dict[str, Any] = {"timeouts": {"connect": CONNECT_TIMEOUT}, "run": {"hide": True}}
    if ssh.key_file is not None:
        overrides["connect_kwargs"] = {"key_filename": [str(ssh.key_file)]}
    return Config(overrides=overrides)


def _gateway(ssh: Ssh) -> Connection | None:
    if not ssh.gateway:
        return None
    user, _, rest = ssh.gateway.rpartition("@")
    host, _, port = rest.partition(":")
    gateway = Connection(
        host, user=user or ssh.user, port=int(port) if port else 22, config=_config(ssh)
    )
    return _guard(gateway, ssh)


def connect(fleet: Fleet, host: Host) -> Connection:
    """An open connection to ``host``; raises HostKeyError or ConnectError naming it."""
    ssh = fleet.ssh
    connection = Connection(
        host.host,
        user=ssh.user,
        port=host.port,
        config=_config(ssh),
        gateway=_gateway(ssh),
        connect_timeout=CONNECT_TIMEOUT,
    )
    _guard(connection, ssh)
    try:
        connection.open()
    except HostKeyError as error:
        # The policy names the host as paramiko does ("[addr]:port"), or the gateway.
        via = "" if host.host in error.host else f" (the gateway {error.host})"
        raise HostKeyError(host.name, error.reason + via) from None
    except paramiko.BadHostKeyException as error:
        raise HostKeyError(
            host.name,
            f"host key changed: expected {fingerprint(error.expected_key)}, got "
            f"{fingerprint(error.key)}; refusing to connect (if the host was rebuilt, remove "
            f"its old line from {ssh.known_hosts})",
        ) from None
    except paramiko.AuthenticationException as error:
        raise ConnectError(host.name, f"login as {ssh.user} refused: {error}") from None
    except (TimeoutError, OSError, paramiko.SSHException, EOFError) as error:
        raise ConnectError(host.name, f"cannot connect: {error or type(error).__name__}") from None
    return connection
