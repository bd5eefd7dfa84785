"""`fab render`: show what each host would get, offline."""

from __future__ import annotations

import sys

from invoke import Context, task

from ccie_remote import render as renderer
from ccie_remote.errors import UsageError
from ccie_remote.masking import mask
from ccie_remote.tasks.common import friendly, load_fleet


@task(
    help={
        "inventory": "inventory file (default $CCIE_INVENTORY, then ./inventory.toml)",
        "host": "only this host (HOST or HOST:PORT)",
    }
)
@friendly
def render(c: Context, inventory: str | None = None, host: str | None = None) -> None:
    """Print the files each host would get, without connecting to any host."""
    fleet = load_fleet(inventory)
    hosts = [h for h in fleet.hosts if host is None or h.matches(host)]
    if not hosts:
        raise UsageError(f"{fleet.path}: no host matches {host!r}")
    for warning in renderer.warnings(fleet):
        print(f"warning: {warning}", file=sys.stderr)

    for target in hosts:
        print(f"=== {target.role} {target.name}")
        for managed in renderer.managed_files(target):
            if managed.only_if_present:
                print(f"--- {managed.path} (kept in step only where it exists)")
            else:
                print(f"--- {managed.path}")
            print(mask(managed.render(fleet, None)), end="")
        print()
