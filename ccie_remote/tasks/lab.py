"""The lab tasks: bring a rehearsal fleet up on the local Docker, describe it, take it down."""

from __future__ import annotations

import logging
from pathlib import Path

from invoke import Collection, Context, task

from ccie_remote import lab as lab_api
from ccie_remote.tasks.common import friendly, setup_logging

DEFAULT_INVENTORY = "lab.toml"
STATUS_COLUMNS = ("lab", "kind", "name", "role", "state", "ssh", "address")


@task(
    help={
        "builders": "how many builders (default 2)",
        "corporate": "no bypass to the outside: the S3 stand-in is reached only via the proxy",
        "docker_builders": "how many of the builders run the stand-in Docker daemon",
        "name": f"lab name, part of every container's name (default {lab_api.DEFAULT_NAME})",
        "inventory": f"where to write the lab's inventory (default {DEFAULT_INVENTORY})",
    }
)
@friendly
def up(
    c: Context,
    builders: int = 2,
    corporate: bool = False,
    docker_builders: int = 0,
    name: str = lab_api.DEFAULT_NAME,
    inventory: str = DEFAULT_INVENTORY,
) -> None:
    """Bring up a lab fleet of sshd containers behind a real proxy and write its inventory.

    A running lab of the same name is removed first. The first run builds the lab's image
    (a few minutes); later runs take seconds.
    """
    quiet_logging()
    lab = lab_api.up(
        name=name,
        builders=builders,
        corporate=corporate,
        docker_builders=docker_builders,
        inventory=Path(inventory),
    )
    print(summary(lab, inventory))


@task(help={"name": f"lab name (default {lab_api.DEFAULT_NAME})"})
@friendly
def down(c: Context, name: str = lab_api.DEFAULT_NAME) -> None:
    """Remove a lab's containers and networks, and nothing else."""
    removed = lab_api.down(name)
    if not removed:
        print(f"no lab named {name} was running")
        return
    print(f"removed lab {name}: {', '.join(removed)}")


@task(help={"name": "show only this lab (default: every lab)"})
@friendly
def status(c: Context, name: str | None = None) -> None:
    """Show the lab containers and networks on this machine."""
    rows = lab_api.status(name)
    if not rows:
        print(f"no lab named {name} is running" if name else "no lab is running")
        return
    print(table(rows))


def summary(lab: lab_api.Lab, inventory: str) -> str:
    """What `lab.up` prints: the hosts, where the inventory is and what to run next."""
    mode = "corporate (no bypass outside the fleet)" if lab.corporate else "with an S3 bypass"
    lines = [f"lab {lab.name} is up, {mode}:"]
    for host in lab.hosts:
        ssh = f"ssh 127.0.0.1:{host.ssh_port}" if host.ssh_port else "no ssh"
        docker = "  stand-in docker" if host.docker else ""
        lines.append(f"  {host.container:<28} {ssh:<20} fleet {host.fleet_ip or '-'}{docker}")
    lines += [
        "proxy: http://proxy.lab.test:3128, its request log:"
        f" docker exec {lab.proxy().container} cat /var/log/tinyproxy/lab.log",
        f"inventory: {lab.inventory_path}",
        f"next: fab provision --inventory {inventory}",
    ]
    return "\n".join(lines)


def table(rows: list[dict[str, str]]) -> str:
    """Rows as aligned columns under a header."""
    widths = {key: max(len(key), *(len(row[key]) for row in rows)) for key in STATUS_COLUMNS}
    lines = ["  ".join(key.upper().ljust(widths[key]) for key in STATUS_COLUMNS).rstrip()]
    for row in rows:
        lines.append("  ".join(row[key].ljust(widths[key]) for key in STATUS_COLUMNS).rstrip())
    return "\n".join(lines)


def quiet_logging() -> None:
    """Show the lab's INFO lines (an image build takes minutes) unless logging is set up."""
    if not logging.getLogger().handlers:
        setup_logging(verbose=False)


ns = Collection("lab")
ns.add_task(up)
ns.add_task(down)
ns.add_task(status)
