"""Pure planning: a host's current state and the fleet in, the changes and actions out.

The same plan drives `fab provision`, its `--dry-run` diff and `fab status`.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field

from ccie_remote import render
from ccie_remote.inventory import Fleet, Host
from ccie_remote.masking import mask
from ccie_remote.remote.state import HostState

REPLICATED_RESTART = (
    "stop replicated",
    "stop replicated-agent",
    "start replicated-agent",
    "start replicated",
)


@dataclass
class Plan:
    """What a host needs: new text for the files that differ, and what to restart or install."""

    host: Host
    changes: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    restart_replicated: bool = False
    restart_docker: bool = False
    install: bool = False
    docker_present: bool = False

    @property
    def empty(self) -> bool:
        return not (self.changes or self.restart_replicated or self.restart_docker or self.install)

    def actions(self, fleet: Fleet) -> list[str]:
        """The plan in words, in the order it is carried out."""
        steps = [f"write {path}" for path in self.changes]
        if self.restart_replicated:
            steps.append("restart replicated: " + ", ".join(REPLICATED_RESTART))
        if self.restart_docker:
            steps.append("reload and restart docker")
        elif self.host.docker and render.DOCKER_DROPIN in self.changes:
            steps.append("docker is not installed: the drop-in applies when it starts")
        if self.install:
            script = (
                fleet.install.services_script
                if self.host.role == "services"
                else fleet.install.builder_script
            )
            steps.append(f"download {script} and run it as root with the proxy settings")
        return steps

    def drift(self) -> dict[str, list[str]]:
        """Per changed file, the settings that differ (see ``drift``)."""
        return {path: drift(path, old, new) for path, (old, new) in self.changes.items()}

    def diff(self) -> str:
        """A unified diff of every file that changes, credentials masked."""
        parts = []
        for path, (old, new) in self.changes.items():
            lines = difflib.unified_diff(
                (old or "").splitlines(keepends=True),
                new.splitlines(keepends=True),
                fromfile=f"{path} (now)" if old is not None else "/dev/null",
                tofile=f"{path} (new)",
            )
            parts.append("".join(lines))
        return mask("".join(parts))


def drift(path: str, old: str | None, new: str) -> list[str]:
    """Which settings of a managed file differ from what the inventory gives it."""
    if old is None:
        return ["missing"]
    if path == render.REPLICATED_CONF:
        try:
            before = json.loads(old)
        except ValueError:
            return ["not valid JSON"]
        after = json.loads(new)
        keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    else:
        before_values, after_values = _assignments(path, old), _assignments(path, new)
        keys = [
            k
            for k in sorted(set(before_values) | set(after_values))
            if before_values.get(k) != after_values.get(k)
        ]
    return keys or ["layout"]


def _assignments(path: str, text: str) -> dict[str, str]:
    """The managed variables a file sets: lines of /etc/environment, or quoted assignments
    inside the drop-in's Environment= and the daemon's REPLICATED_OPTS."""
    if path == render.ENVIRONMENT:
        values = render.parse_environment(text)
        return {k: v for k, v in values.items() if k in render.MANAGED_NAMES}
    return dict(re.findall(r"\b(HTTPS?_PROXY|NO_PROXY)=([^\s\"']*)", text))


def plan_host(fleet: Fleet, host: Host, state: HostState) -> Plan:
    """What ``host`` needs to match the inventory, given what it holds now."""
    plan = Plan(host=host, docker_present=state.fact("docker"))
    for path, new in render.render_host(fleet, host, state.files).items():
        old = state.files.get(path)
        if old != new:
            plan.changes[path] = (old, new)

    if host.role == "services":
        plan.install = not state.installed
        plan.restart_replicated = bool(plan.changes) and state.replicated_installed
    else:
        plan.install = not state.installed
        plan.restart_docker = (
            host.docker and render.DOCKER_DROPIN in plan.changes and plan.docker_present
        )
    return plan
