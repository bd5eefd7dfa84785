"""`fab provision`: put every host of the inventory behind the proxy."""

from __future__ import annotations

import functools
import getpass
import os
import socket
import sys
import threading
from collections.abc import Callable

from invoke import Context, task
from invoke.exceptions import Exit

from ccie_remote import masking, render
from ccie_remote.errors import UsageError
from ccie_remote.inventory import Fleet, Host
from ccie_remote.remote import apply
from ccie_remote.remote.provision import (
    DEFAULT_PARALLEL,
    Provisioner,
    Session,
    close_sessions,
    open_sessions,
    resolve_passphrase,
)
from ccie_remote.report import Reporter, summary
from ccie_remote.tasks.common import friendly, load_fleet, setup_logging

CONSOLE_PORT = 8800

HELP = {
    "inventory": "inventory file (default $CCIE_INVENTORY, then ./inventory.toml)",
    "dry-run": "connect and read only: print each host's diff and planned actions",
    "parallel": f"builders provisioned at once (default {DEFAULT_PARALLEL})",
    "only": "only this host, HOST or HOST:PORT (repeatable); the services box is still read",
    "verbose": "debug detail, one plain line per event",
}


@task(help=HELP, iterable=["only"])
@friendly
def provision(
    c: Context,
    inventory: str | None = None,
    dry_run: bool = False,
    parallel: int = DEFAULT_PARALLEL,
    only: list[str] | None = None,
    verbose: bool = False,
) -> None:
    """Write the proxy settings to every host, restart what needs it, run the installers."""
    setup_logging(verbose)
    fleet = load_fleet(inventory)
    targets = select_hosts(fleet, only or [])
    ok = provision_hosts(c, fleet, targets, dry_run=dry_run, parallel=parallel, verbose=verbose)
    if not ok:
        raise Exit(code=1)


def select_hosts(fleet: Fleet, selectors: list[str]) -> list[Host]:
    """The hosts --only names (all of them without it); a selector matching none is an error."""
    if not selectors:
        return list(fleet.hosts)
    for selector in selectors:
        if not any(host.matches(selector) for host in fleet.hosts):
            raise UsageError(f"{fleet.path}: --only {selector}: no such host in the inventory")
    return [h for h in fleet.hosts if any(h.matches(s) for s in selectors)]


def provision_hosts(
    c: Context,
    fleet: Fleet,
    targets: list[Host],
    *,
    dry_run: bool = False,
    parallel: int = DEFAULT_PARALLEL,
    verbose: bool = False,
    before_change: Callable[[Session], None] | None = None,
) -> bool:
    """Provision ``targets``; the services box is always read. True when no host failed.

    ``before_change`` sees the services box's session after preflight, before any change,
    and may raise to stop the run.
    """
    for warning in render.warnings(fleet):
        print(f"warning: {warning}", file=sys.stderr)
    change_services = fleet.services in targets
    hosts = [fleet.services] + [h for h in targets if h.role == "builder"]
    reporter = Reporter([h.name for h in hosts], live=sys.stdout.isatty() and not verbose)

    console = ConsoleProbe(fleet)
    sessions = open_sessions(fleet, hosts, reporter, parallel, cleanup=not dry_run)
    services, builders = sessions[0], sessions[1:]
    try:
        if services.result.status == "failed":
            for builder in builders:
                if builder.result.status == "pending":
                    builder.fail("not started: the services box failed preflight", "skipped")
            reporter.finish()
            print(summary([s.result for s in sessions]))
            print("no host was changed", file=sys.stderr)
            return False
        if before_change is not None:
            before_change(services)
        if dry_run:
            reporter.finish()
            print_plans(fleet, sessions if change_services else builders)
            return all(s.result.status != "failed" for s in sessions)

        provisioner = Provisioner(
            fleet,
            reporter,
            passphrase=passphrase_source(),
            prompts=apply.prompts_from_config(c.config),
            parallel=parallel,
        )
        provisioner.run(services, builders, change_services)
    finally:
        close_sessions(sessions)

    if not change_services:
        services.result.status = "read"
        services.result.why = "not a target: only read"
    reporter.finish()
    print(summary([s.result for s in sessions]))
    installed_now = services.plan is not None and services.plan.install and change_services
    print(console.note(installed_now and services.result.status == "changed"))
    return not any(s.result.failed for s in sessions)


def passphrase_source() -> Callable[[], str]:
    """A function giving the passphrase, asked at most once, and registered for masking."""

    @functools.cache
    def passphrase() -> str:
        value = resolve_passphrase(
            os.environ.get("CIRCLE_SECRET_PASSPHRASE"),
            sys.stdin.isatty(),
            lambda: getpass.getpass("CIRCLE_SECRET_PASSPHRASE (hidden): "),
        )
        masking.register(value)
        return value

    return passphrase


def print_plans(fleet: Fleet, sessions: list[Session]) -> None:
    """The dry run's report: per host, the diff of every managed file and the actions."""
    for session in sessions:
        print(f"=== {session.host.role} {session.host.name}")
        if session.plan is None:
            print(f"  cannot plan: {session.result.why}")
            continue
        if session.plan.empty:
            print("  in step: nothing to write, restart or install")
            continue
        print(session.plan.diff(), end="")
        for action in session.plan.actions(fleet):
            print(f"  would {action}")


def console_reachable(address: str, port: int = CONSOLE_PORT, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


class ConsoleProbe:
    """Whether the console answers from here, probed in the background while the run goes on.

    From outside the fleet's network a private address often does not answer at all; probing
    at the start keeps that timeout from being added to every run.
    """

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.reachable = False
        self.thread = threading.Thread(target=self._probe, daemon=True)
        self.thread.start()

    def _probe(self) -> None:
        self.reachable = console_reachable(self.fleet.services.private_ip)

    def note(self, console_started: bool) -> str:
        """The line said after the run; ``console_started``: the run installed the services box,
        so the console may have come up since the probe began."""
        self.thread.join(timeout=0.2)  # a console that answers at all answers by now
        address = self.fleet.services.private_ip
        if self.reachable or (console_started and console_reachable(address, timeout=0.5)):
            return f"console: https://{address}:{CONSOLE_PORT} is directly reachable"
        return (
            f"console: {address}:{CONSOLE_PORT} is not directly reachable from here; open a "
            f"tunnel with: fab tunnel services --inventory {self.fleet.path}"
        )
