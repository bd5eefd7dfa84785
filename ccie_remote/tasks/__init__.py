"""The task collection `fab` shows: every command a user types, wired in one place."""

from __future__ import annotations

from invoke import Collection

from ccie_remote.tasks import builders, lab
from ccie_remote.tasks.checks import status, verify
from ccie_remote.tasks.provision import provision
from ccie_remote.tasks.render import render
from ccie_remote.tasks.tunnel import tunnel
from ccie_remote.tasks.undo import remove, rollback
from ccie_remote.tasks.userdata import userdata

ns = Collection()
for command in (render, provision, verify, status, rollback, remove, tunnel, userdata):
    ns.add_task(command)
ns.add_collection(Collection("builders", builders.add))
ns.add_collection(lab.ns)
