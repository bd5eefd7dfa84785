"""The task collection `fab` shows: every command a user types, wired in one place."""

from __future__ import annotations

from invoke import Collection

from ccie_remote.tasks import builders
from ccie_remote.tasks.provision import provision
from ccie_remote.tasks.render import render
from ccie_remote.tasks.tunnel import tunnel
from ccie_remote.tasks.userdata import userdata

ns = Collection()
ns.add_task(render)
ns.add_task(provision)
ns.add_task(tunnel)
ns.add_task(userdata)
ns.add_collection(Collection("builders", builders.add))
