"""`fab tunnel services`: reach the services box's console through SSH."""

from __future__ import annotations

import signal
import socket
import threading
import time
from types import FrameType

from invoke import Context, task

from ccie_remote.errors import UsageError
from ccie_remote.remote.connection import connect
from ccie_remote.tasks.common import friendly, load_fleet
from ccie_remote.tasks.provision import CONSOLE_PORT, console_reachable


@task(
    positional=["target"],
    help={
        "target": "what to reach: services (the console on port 8800)",
        "inventory": "inventory file (default $CCIE_INVENTORY, then ./inventory.toml)",
        "local-port": f"local port to listen on (default {CONSOLE_PORT})",
    },
)
@friendly
def tunnel(
    c: Context, target: str, inventory: str | None = None, local_port: int = CONSOLE_PORT
) -> None:
    """Forward a local port to the services box's console (port 8800) until Ctrl-C."""
    if target != "services":
        raise UsageError(f"fab tunnel {target}: only `fab tunnel services` exists")
    fleet = load_fleet(inventory)
    check_port_free(local_port)
    if console_reachable(fleet.services.private_ip):
        print(
            f"note: the console is directly reachable at https://{fleet.services.private_ip}:"
            f"{CONSOLE_PORT}; opening the tunnel anyway"
        )

    connection = connect(fleet, fleet.services)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        with connection.forward_local(local_port, remote_port=CONSOLE_PORT):
            # Fabric binds the local port in a thread of its own: wait until it listens.
            wait_until_bound(local_port)
            print(
                f"tunnel open: http://localhost:{local_port}/ -> {fleet.services.name} "
                f"localhost:{CONSOLE_PORT} (Ctrl-C to close)",
                flush=True,
            )
            while not stop.wait(0.5):
                if not connection.is_connected:
                    raise UsageError(f"{fleet.services.name}: the SSH connection closed")
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        connection.close()
    print("tunnel closed")


def wait_until_bound(port: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while _port_free(port):
        if time.monotonic() > deadline:
            raise UsageError(f"the tunnel did not start listening on local port {port}")
        time.sleep(0.02)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def check_port_free(port: int) -> None:
    """Fabric reports a busy port only when the tunnel closes, so look before opening it."""
    if not 1 <= port <= 65535:
        raise UsageError(f"--local-port {port} is out of range 1-65535")
    if not _port_free(port):
        raise UsageError(f"local port {port} is busy; pick another with --local-port")
