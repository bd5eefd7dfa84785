"""`fab rollback` and `fab remove`: undo the last provision, or every setting ccie-remote wrote."""

from __future__ import annotations

import sys
from collections.abc import Callable

from invoke import Context, task
from invoke.exceptions import Exit

from ccie_remote import render
from ccie_remote.errors import CcieError, RemoteCommandError
from ccie_remote.inventory import Fleet, Host
from ccie_remote.remote import apply
from ccie_remote.remote.provision import DEFAULT_PARALLEL, Session, close_sessions, each
from ccie_remote.remote.provision import open_sessions as open_host_sessions
from ccie_remote.report import Reporter
from ccie_remote.tasks.checks import INVENTORY_HELP, table
from ccie_remote.tasks.common import friendly, load_fleet, setup_logging
from ccie_remote.tasks.provision import select_hosts

HELP = {
    "inventory": INVENTORY_HELP,
    "only": "only this host, HOST or HOST:PORT (repeatable)",
    "verbose": "debug detail",
}


@task(help=HELP, iterable=["only"])
@friendly
def rollback(
    c: Context, inventory: str | None = None, only: list[str] | None = None, verbose: bool = False
) -> None:
    """Restore the files the last provision changed, and restart what depends on them."""
    setup_logging(verbose)
    fleet = load_fleet(inventory)

    def undo(session: Session) -> str:
        assert session.remote is not None and session.state is not None
        if not session.state.fact("backup"):
            raise CcieError("no backup on this host: nothing was provisioned here yet")
        # Restore and restart in one command: what to restart follows the backup's MANIFEST.
        script = apply.rollback_script() + _restarts(session, _in_backup)
        try:
            result = session.remote.root(script, label="restore the backup")
        except RemoteCommandError as error:
            if error.exited == 3:
                raise CcieError("no backup on this host") from None
            raise
        restored = result.stdout.strip().splitlines()
        return "; ".join(restored) or "the backup was empty"

    _run_each(fleet, select_hosts(fleet, only or []), undo)


@task(help=HELP, iterable=["only"])
@friendly
def remove(
    c: Context, inventory: str | None = None, only: list[str] | None = None, verbose: bool = False
) -> None:
    """Take every proxy setting ccie-remote wrote off the hosts; keep everything else."""
    setup_logging(verbose)
    fleet = load_fleet(inventory)

    def strip(session: Session) -> str:
        assert session.remote is not None and session.state is not None
        files: dict[str, str | None] = {}
        for managed in render.managed_files(session.host):
            current = session.state.files.get(managed.path)
            if current is None:
                continue
            new = managed.removed(current)
            if new != current:
                files[managed.path] = new
        if not files:
            return "nothing of ccie-remote's left to remove"

        def changed(path: str) -> str:
            return "true" if path in files else "false"

        script = apply.write_files_script(files, apply.backup_stamp())
        script += _restarts(session, changed)
        session.remote.root(script, label="remove the proxy settings")
        return (
            "; ".join(
                f"{'deleted' if text is None else 'cleaned'} {path}"
                for path, text in files.items()
            )
            + " (backed up: `fab rollback` puts them back)"
        )

    _run_each(fleet, select_hosts(fleet, only or []), strip)


def _in_backup(path: str) -> str:
    """The shell test for ``path`` being in the backup that rollback_script restores."""
    return f"grep -q ' {path}$' \"$backup/MANIFEST\""


def _restarts(session: Session, touched: Callable[[str], str]) -> str:
    """Shell lines restarting what reads the managed files: replicated on the services box,
    Docker on a Docker builder; ``touched(path)`` is the shell test for a file having changed."""
    assert session.state is not None
    state, host = session.state, session.host
    lines = []
    if host.role == "services" and state.replicated_installed:
        test = " || ".join(touched(m.path) for m in render.managed_files(host))
        lines += [f"if {test}; then", apply.restart_replicated_script(), "fi"]
    if host.docker and state.fact("docker"):
        restart = apply.restart_docker_script(state.fact("systemd"))
        lines += [f"if {touched(render.DOCKER_DROPIN)}; then", restart, "fi"]
    return "".join(line + "\n" for line in lines)


def _run_each(fleet: Fleet, hosts: list[Host], work: Callable[[Session], str]) -> None:
    """Run ``work`` on every host at once and print a table of what it said."""
    reporter = Reporter([h.name for h in hosts], stream=sys.stderr, live=False, quiet=True)
    sessions = open_host_sessions(fleet, hosts, reporter, DEFAULT_PARALLEL)
    outcome: dict[str, tuple[str, str]] = {}

    def one(session: Session) -> None:
        if session.remote is None:
            outcome[session.host.name] = ("failed", session.result.why)
            return
        try:
            outcome[session.host.name] = ("done", work(session))
        except CcieError as error:
            outcome[session.host.name] = ("failed", getattr(error, "reason", str(error)))

    try:
        each(sessions, one, DEFAULT_PARALLEL)
    finally:
        close_sessions(sessions)
    rows: list[tuple[str, ...]] = [("HOST", "ROLE", "RESULT", "DETAIL")]
    rows += [(h.name, h.role, *outcome[h.name]) for h in hosts]
    print(table(rows))
    if any(result == "failed" for result, _ in outcome.values()):
        raise Exit(code=1)
