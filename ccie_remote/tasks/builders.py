"""`fab builders.add`: add a builder to the inventory and provision it alone."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import tomlkit
from invoke import Context, task
from invoke.exceptions import Exit

from ccie_remote import inventory as inventory_module
from ccie_remote.errors import InventoryError, UsageError
from ccie_remote.remote.provision import Session
from ccie_remote.tasks.common import friendly, inventory_path, load_fleet, setup_logging
from ccie_remote.tasks.provision import provision_hosts


@task(
    positional=["host"],
    help={
        "host": "the new builder's address (where SSH connects)",
        "inventory": "inventory file (default $CCIE_INVENTORY, then ./inventory.toml)",
        "port": "its SSH port (default: [ssh].port)",
        "private-ip": "its private address (default: host)",
        "docker": "a Docker builder: the Docker daemon gets the proxy settings too",
        "verbose": "debug detail",
    },
)
@friendly
def add(
    c: Context,
    host: str,
    inventory: str | None = None,
    port: int = 0,
    private_ip: str = "",
    docker: bool = False,
    verbose: bool = False,
) -> None:
    """Add a builder to the inventory, keeping its comments, and provision that builder alone."""
    setup_logging(verbose)
    path = inventory_path(inventory)
    load_fleet(str(path))  # the inventory as it is must be valid before it is edited
    text = with_builder(path.read_text(encoding="utf-8"), host, port, private_ip, docker)
    fleet = inventory_module.parse(text, path)
    new = fleet.builders[-1]

    def services_ready(services: Session) -> None:
        if services.state is None or not services.state.installed:
            raise UsageError(
                f"{fleet.services.name}: the services box is not provisioned yet; run "
                f"`fab provision --inventory {path}` first (the inventory was not changed)"
            )
        write_atomically(path, text)
        print(f"{path}: builder {new.name} added")

    if not provision_hosts(c, fleet, [new], verbose=verbose, before_change=services_ready):
        raise Exit(code=1)


def with_builder(text: str, host: str, port: int, private_ip: str, docker: bool) -> str:
    """The inventory text with one more [[builders]] table; comments and layout kept."""
    problems = []
    reason = inventory_module.host_problem(host)
    if reason:
        problems.append(f"builders.add {host}: {reason}")
    if port and inventory_module.port_problem(port):
        problems.append(f"builders.add --port: {inventory_module.port_problem(port)}")
    if private_ip and inventory_module.host_problem(private_ip):
        problems.append(f"builders.add --private-ip: {inventory_module.host_problem(private_ip)}")
    if problems:
        raise InventoryError(problems)

    document = tomlkit.parse(text)
    table = tomlkit.table()
    table["host"] = host
    if port:
        table["port"] = port
    if private_ip:
        table["private_ip"] = private_ip
    if docker:
        table["docker"] = True
    builders = document.get("builders")
    if builders is None:
        builders = tomlkit.aot()
        document["builders"] = builders
    builders.append(table)
    return tomlkit.dumps(document)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename, keeping its mode."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
