"""The task collection `fab` shows: every command a user types, wired in one place."""

from __future__ import annotations

from invoke import Collection

from ccie_remote.tasks.render import render

ns = Collection()
ns.add_task(render)
