"""`fab verify` and `fab status`: proof that the fleet uses the proxy, and where it drifted."""

from __future__ import annotations

import sys

from invoke import Context, task
from invoke.exceptions import Exit

from ccie_remote.errors import CcieError
from ccie_remote.masking import mask
from ccie_remote.remote.provision import DEFAULT_PARALLEL, Session, close_sessions, each
from ccie_remote.remote.provision import open_sessions as open_host_sessions
from ccie_remote.remote.verify import Check, evaluate, evidence_script, parse_evidence
from ccie_remote.report import Reporter
from ccie_remote.tasks.common import friendly, load_fleet, setup_logging
from ccie_remote.tasks.provision import select_hosts

INVENTORY_HELP = "inventory file (default $CCIE_INVENTORY, then ./inventory.toml)"


def table(rows: list[tuple[str, ...]]) -> str:
    """Rows as aligned columns (the last column is left ragged)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return mask("\n".join(lines))


@task(
    help={
        "inventory": INVENTORY_HELP,
        "url": "outside URL to fetch through the proxy (default: the builder installer's URL)",
        "only": "only this host, HOST or HOST:PORT (repeatable)",
        "verbose": "debug detail",
    },
    iterable=["only"],
)
@friendly
def verify(
    c: Context,
    inventory: str | None = None,
    url: str | None = None,
    only: list[str] | None = None,
    verbose: bool = False,
) -> None:
    """Prove from every host that it uses the proxy, and bypasses it where it must."""
    setup_logging(verbose)
    fleet = load_fleet(inventory)
    target_url = url or fleet.install.builder_script
    hosts = select_hosts(fleet, only or [])
    reporter = Reporter([h.name for h in hosts], stream=sys.stderr, live=False, quiet=True)
    sessions = open_host_sessions(fleet, hosts, reporter, DEFAULT_PARALLEL, read=False)
    checks: dict[str, list[Check]] = {}

    def gather(session: Session) -> None:
        if session.remote is None:
            checks[session.host.name] = [
                Check(session.host.name, "connect", False, session.result.why)
            ]
            return
        try:
            script = evidence_script(fleet, session.host, target_url)
            result = session.remote.login(script, label="gather the proxy evidence")
            evidence = parse_evidence(result.stdout)
            checks[session.host.name] = evaluate(fleet, session.host, evidence, target_url)
        except CcieError as error:
            checks[session.host.name] = [Check(session.host.name, "verify", False, str(error))]

    try:
        each(sessions, gather, DEFAULT_PARALLEL)
    finally:
        close_sessions(sessions)

    rows: list[tuple[str, ...]] = [("HOST", "CHECK", "RESULT", "DETAIL")]
    for host in hosts:
        rows += [(c.host, c.name, "ok" if c.ok else "FAILED", c.detail) for c in checks[host.name]]
    print(table(rows))
    failed = [c for host in hosts for c in checks[host.name] if not c.ok]
    if failed:
        names = sorted({f"{c.host} ({c.name})" for c in failed})
        print(f"verify: {len(failed)} check(s) failed: {', '.join(names)}", file=sys.stderr)
        raise Exit(code=1)
    print(f"verify: all {len(rows) - 1} checks passed on {len(hosts)} host(s)")


@task(help={"inventory": INVENTORY_HELP, "verbose": "debug detail"})
@friendly
def status(c: Context, inventory: str | None = None, verbose: bool = False) -> None:
    """One line per host: in step with the inventory or drifted, installed or not."""
    setup_logging(verbose)
    fleet = load_fleet(inventory)
    hosts = list(fleet.hosts)
    reporter = Reporter([h.name for h in hosts], stream=sys.stderr, live=False, quiet=True)
    sessions = open_host_sessions(fleet, hosts, reporter, DEFAULT_PARALLEL)
    close_sessions(sessions)

    rows: list[tuple[str, ...]] = [("HOST", "ROLE", "INSTALLED", "STATE")]
    unhealthy = False
    for session in sessions:
        host, plan, state = session.host, session.plan, session.state
        if plan is None or state is None:
            rows.append((host.name, host.role, "?", f"unreachable: {session.result.why}"))
            unhealthy = True
            continue
        drifted = plan.drift()
        if drifted:
            unhealthy = True
            words = "; ".join(f"{path} ({', '.join(keys)})" for path, keys in drifted.items())
            line = f"drifted: {words}"
        else:
            line = "in step"
        rows.append((host.name, host.role, "yes" if state.installed else "no", line))
    print(table(rows))
    if unhealthy:
        print(
            f"status: run `fab provision --inventory {fleet.path} --dry-run` to see the "
            "differences, without it to fix them",
            file=sys.stderr,
        )
        raise Exit(code=1)
