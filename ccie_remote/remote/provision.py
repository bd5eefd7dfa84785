"""Provisioning a fleet: preflight every host, the services box first, then builders at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ccie_remote.errors import CcieError, HostError, UsageError
from ccie_remote.inventory import Fleet, Host
from ccie_remote.remote import apply
from ccie_remote.remote.connection import connect
from ccie_remote.remote.plan import Plan, plan_host
from ccie_remote.remote.shell import LineStream, Remote
from ccie_remote.remote.state import HostState, read_state
from ccie_remote.report import HostResult, Reporter

log = logging.getLogger(__name__)

DEFAULT_PARALLEL = 20


@dataclass
class Session:
    """One host's part in a run: its connection, state, plan and result."""

    host: Host
    result: HostResult
    remote: Remote | None = None
    state: HostState | None = None
    plan: Plan | None = None
    started: float = field(default_factory=time.monotonic)

    def fail(self, why: str, status: str = "failed") -> None:
        self.result.status = status
        self.result.why = why
        self.result.seconds = time.monotonic() - self.started


def open_sessions(
    fleet: Fleet,
    hosts: Iterable[Host],
    reporter: Reporter,
    parallel: int,
    read: bool = True,
    cleanup: bool = False,
) -> list[Session]:
    """Connect to every host at once and (with ``read``) read its state and plan; with
    ``cleanup``, a leftover installer environment file is deleted on the way.

    Failures are recorded in each session's result, not raised.
    """
    sessions = [Session(h, HostResult(h.name, h.role)) for h in hosts]

    def preflight(session: Session) -> None:
        try:
            connection = connect(fleet, session.host)
            session.remote = Remote(session.host.name, connection)
            if read:
                session.state = read_state(session.remote, session.host, cleanup)
                session.plan = plan_host(fleet, session.host, session.state)
            reporter.line(session.host.name, "connected" + (", state read" if read else ""))
        except CcieError as error:
            session.fail(_reason(error))
            reporter.line(session.host.name, f"preflight failed: {_reason(error)}", problem=True)

    each(sessions, preflight, parallel)
    return sessions


def close_sessions(sessions: list[Session]) -> None:
    for session in sessions:
        if session.remote is not None:
            session.remote.close()


def each(sessions: list[Session], work: Callable[[Session], None], parallel: int) -> None:
    if not sessions:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(sessions)))) as pool:
        list(pool.map(work, sessions))


def _reason(error: CcieError) -> str:
    return error.reason if isinstance(error, HostError) else str(error)


@dataclass
class Provisioner:
    """Carries out the plans of a run, in the guide's order."""

    fleet: Fleet
    reporter: Reporter
    passphrase: Callable[[], str]
    prompts: dict[str, str]
    parallel: int = DEFAULT_PARALLEL

    def run(self, services: Session, builders: list[Session], change_services: bool) -> None:
        """Services box first (when it is a target), then every builder at once."""
        if any(b.plan is not None and b.plan.install for b in builders):
            self.passphrase()  # asked (or refused) once, before any host changes
        if change_services:
            self.apply(services)
        ready = [b for b in builders if b.result.status == "pending"]
        why = self.services_not_ready(services, change_services)
        if why:
            for builder in ready:
                builder.fail(why, "skipped")
            return
        each(ready, self.apply, self.parallel)

    @staticmethod
    def services_not_ready(services: Session, changed_here: bool) -> str | None:
        """Why builders cannot go ahead yet, or None when the services box is ready for them."""
        if changed_here:
            if services.result.status in ("changed", "unchanged"):
                return None
            return "not provisioned: the services box did not succeed"
        if services.state is not None and services.state.installed:
            return None
        return "the services box is not provisioned yet: run `fab provision` first"

    def apply(self, session: Session) -> None:
        if session.result.status != "pending":
            return
        assert session.remote is not None and session.plan is not None
        assert session.state is not None
        name = session.host.name
        try:
            self.carry_out(session.remote, session.plan, session.state)
        except CcieError as error:
            session.fail(_reason(error))
            self.reporter.line(name, f"failed: {_reason(error)}", problem=True)
            return
        plan = session.plan
        session.result.actions = plan.actions(self.fleet)
        session.result.status = "unchanged" if plan.empty else "changed"
        session.result.why = "; ".join(_short(a) for a in session.result.actions) or (
            "already in step: nothing written, restarted or installed"
        )
        session.result.seconds = time.monotonic() - session.started
        self.reporter.line(name, session.result.status)

    def carry_out(self, remote: Remote, plan: Plan, state: HostState) -> None:
        """The plan in as few commands as it allows: one for every change, and on the
        services box one more for the installer, which needs a pty for its questions."""
        name = plan.host.name
        steps = [_short(step) for step in plan.actions(self.fleet)]
        if not steps:
            return
        self.reporter.line(name, "; ".join(steps))
        out = LineStream(lambda line: self.reporter.line(name, line))
        if plan.install and plan.host.role == "builder":
            builder_run = apply.installer_run(self.fleet, plan.host, self.passphrase())
            script = change_script(plan, state, None) + apply.builder_install_script(builder_run)
            remote.root(script, out=out, timeout=apply.INSTALLER_TIMEOUT, label=", ".join(steps))
            return

        run = apply.installer_run(self.fleet, plan.host, None) if plan.install else None
        script = change_script(plan, state, run)
        if script:
            remote.root(script, label=", ".join(steps))
        if run is not None:
            self.reporter.line(name, f"running the installer from {run.url}")
            apply.run_installer(remote, run, self.fleet.proxy.http.url, self.prompts, out)
            self.settle_services(remote, plan.host)

    def settle_services(self, remote: Remote, host: Host) -> None:
        """The installer writes the daemon's settings itself: bring them in step at once."""
        after = plan_host(self.fleet, host, read_state(remote, host))
        script = change_script(after, None, None)
        if script:
            remote.root(script, label="bring the daemon's settings in step")


def change_script(plan: Plan, state: HostState | None, run: apply.InstallerRun | None) -> str:
    """One sh script for a plan's changes: files, restarts, the services installer's download."""
    parts: list[str] = []
    files = {path: new for path, (_, new) in plan.changes.items()}
    if files:
        parts.append(apply.write_files_script(files, apply.backup_stamp()))
    if plan.restart_replicated:
        parts.append(apply.restart_replicated_script())
    if plan.restart_docker:
        parts.append(apply.restart_docker_script(state is not None and state.fact("systemd")))
    if run is not None:
        parts.append(apply.prepare_installer_script(run))
    return "".join(part if part.endswith("\n") else part + "\n" for part in parts)


def _short(action: str) -> str:
    return action.split(":")[0] if action.startswith("restart replicated") else action


def resolve_passphrase(env_value: str | None, interactive: bool, ask: Callable[[], str]) -> str:
    """The builder passphrase: from the environment, else asked on the terminal."""
    if env_value:
        return env_value
    if interactive:
        value = ask()
        if value:
            return value
    raise UsageError(
        "builders need CIRCLE_SECRET_PASSPHRASE (the passphrase from the services box's "
        "console, port 8800): set it in the environment, or run from a terminal to be asked"
    )
