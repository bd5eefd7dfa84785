"""The remote steps: atomic writes with backups, ordered restarts, installers on a pty."""

from __future__ import annotations

import base64
import contextlib
import logging
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass

from invoke.watchers import Responder

from ccie_remote import render
from ccie_remote.inventory import Fleet, Host
from ccie_remote.remote.plan import REPLICATED_RESTART
from ccie_remote.remote.shell import LineStream, Remote
from ccie_remote.remote.state import (
    BACKUP_DIR,
    INSTALLER_ENV,
    LAST_BACKUP,
    STATE_DIR,
    installed_marker,
)

log = logging.getLogger(__name__)

INSTALLER_TIMEOUT = 1800

# What the Replicated installer asks; configurable in the Invoke/Fabric config as
# ccie.prompts.proxy_question and ccie.prompts.proxy_address.
DEFAULT_PROMPTS = {
    "proxy_question": r"require a proxy to access the Internet\? \(y/N\)",
    "proxy_address": r"Enter desired HTTP proxy address: ?",
}


def write_files_script(files: Mapping[str, str | None], stamp: str) -> str:
    """A sh script writing each file atomically, the previous version kept in a backup folder.

    Each file is written to a temporary file beside it, given the old file's owner and mode
    (or root and the default mode for a new file) and renamed over it: a run cut off at any
    point leaves each file either old or new, never half-written. The backup folder's MANIFEST
    says which files existed before, so a rollback can also delete the ones that did not.
    A file whose new text is None is deleted (after its backup).
    """
    backup = f"{BACKUP_DIR}/{stamp}"
    modes = {m.path: m.mode for m in render.ALL_MANAGED}
    lines = [
        "set -eu",
        f"mkdir -p {BACKUP_DIR} && chmod 700 {STATE_DIR} {BACKUP_DIR}",
        f"backup={backup}",
        'mkdir -p "$backup"',
        ': > "$backup/MANIFEST"',
        # `last` moves first: a run cut off halfway can still be rolled back, since every
        # file is listed in the MANIFEST before it is touched.
        f'ln -sfn "{stamp}" {BACKUP_DIR}/last',
    ]
    for path, text in files.items():
        lines += [f"f={shlex.quote(path)}", *_BACKUP_LINES]
        if text is None:
            lines.append('rm -f "$f"')
            continue
        encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
        mode = oct(modes.get(path, 0o644))[2:]
        lines += [
            'mkdir -p "$(dirname "$f")"',
            'rm -f "$f".ccie-new.*',
            'tmp=$(mktemp "$f.ccie-new.XXXXXX")',
            "base64 -d > \"$tmp\" <<'CCIE_EOF'",
            *[encoded[i : i + 76] for i in range(0, len(encoded), 76)],
            "CCIE_EOF",
            'if [ -e "$f" ]; then',
            '  chown --reference="$f" "$tmp" && chmod --reference="$f" "$tmp"',
            "else",
            f'  chown 0:0 "$tmp" && chmod {mode} "$tmp"',
            "fi",
            'mv -f "$tmp" "$f"',
        ]
    return "\n".join(lines) + "\n"


_BACKUP_LINES = [
    'if [ -e "$f" ]; then',
    '  mkdir -p "$backup$(dirname "$f")" && cp -p "$f" "$backup$f"',
    '  echo "present $f" >> "$backup/MANIFEST"',
    "else",
    '  echo "absent $f" >> "$backup/MANIFEST"',
    "fi",
]


def backup_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{time.time_ns() % 10**6:06d}"


def rollback_script() -> str:
    """Restore every file of the last backup (deleting those that were absent), atomically."""
    return (
        "\n".join(
            [
                "set -eu",
                f'[ -f {LAST_BACKUP}/MANIFEST ] || {{ echo "no backup" >&2; exit 3; }}',
                f"backup=$(readlink -f {LAST_BACKUP})",
                "while read -r state f; do",
                '  if [ "$state" = present ]; then',
                '    tmp=$(mktemp "$f.ccie-new.XXXXXX")',
                '    cp -p "$backup$f" "$tmp" && mv -f "$tmp" "$f"',
                '    echo "restored $f"',
                "  else",
                '    rm -f "$f"',
                '    echo "deleted $f (it did not exist before)"',
                "  fi",
                'done < "$backup/MANIFEST"',
            ]
        )
        + "\n"
    )


def quietly(commands: str, what: str) -> str:
    """Run ``commands`` with their output in a file, shown only when they fail.

    An init script may leave a daemon holding its stdout; were that the SSH channel, the
    command would not end until the daemon did.
    """
    return "\n".join(
        [
            "log=$(mktemp)",
            f'if ! {{ {commands}; }} >"$log" 2>&1 </dev/null; then',
            f'  echo "{what} failed:" >&2; cat "$log" >&2; rm -f "$log"; exit 1',
            "fi",
            'rm -f "$log"',
        ]
    )


def restart_replicated_script() -> str:
    """Restart replicated in the guide's order, stopping at the first step that fails."""
    steps = " && ".join(
        f"service {step.split()[1]} {step.split()[0]}" for step in REPLICATED_RESTART
    )
    return quietly(steps, "restarting replicated")


def restart_docker_script(systemd: bool) -> str:
    if systemd:
        return quietly("systemctl daemon-reload && systemctl restart docker", "restarting docker")
    return quietly("service docker restart", "restarting docker")


@dataclass(frozen=True)
class InstallerRun:
    """What an installer needs on the host: its URL, and its environment (secrets included)."""

    role: str
    url: str
    environment: dict[str, str]

    @property
    def script_path(self) -> str:
        return f"{STATE_DIR}/{self.url.rsplit('/', 1)[-1] or 'installer.sh'}"


def installer_run(fleet: Fleet, host: Host, passphrase: str | None) -> InstallerRun:
    environment = {
        name: value
        for name, value in render.environment_values(fleet).items()
        if name != "JVM_OPTS"
    }
    if host.role == "services":
        return InstallerRun("services", fleet.install.services_script, environment)
    environment["CIRCLE_SECRET_PASSPHRASE"] = passphrase or ""
    environment["SERVICES_PRIVATE_IP"] = fleet.services.private_ip
    return InstallerRun("builder", fleet.install.builder_script, environment)


def prepare_installer_script(run: InstallerRun) -> str:
    """Download the installer with the proxy settings; leave its environment root-only.

    This script travels on stdin, so the secrets in it never show in a command line.
    """
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in run.environment.items())
    url, target = shlex.quote(run.url), shlex.quote(run.script_path)
    return (
        "\n".join(
            [
                "set -eu",
                "umask 077",
                f"mkdir -p {STATE_DIR} && chmod 700 {STATE_DIR}",
                f"cat > {INSTALLER_ENV} <<'CCIE_EOF'",
                exports,
                "CCIE_EOF",
                exports,
                "if command -v curl >/dev/null 2>&1; then",
                f"  curl -fsSL --retry 2 --connect-timeout 20 -o {target} {url}",
                "else",
                f"  wget -q -O {target} {url}",
                "fi",
            ]
        )
        + "\n"
    )


def builder_install_script(run: InstallerRun) -> str:
    """Download and run the builder installer in the same command as the builder's changes.

    The builder installer asks nothing (the guide pipes it into bash), so it needs no pty:
    its environment, the passphrase included, arrives inside this script on the channel's
    stdin and never touches a file or a command line. Its stdin is /dev/null, so it cannot
    read the rest of this script.
    """
    exports = [f"export {k}={shlex.quote(v)}" for k, v in run.environment.items()]
    url, target = shlex.quote(run.url), shlex.quote(run.script_path)
    return (
        "\n".join(
            [
                "set -eu",
                *exports,
                f"mkdir -p {STATE_DIR} && chmod 700 {STATE_DIR}",
                f"curl -fsSL --retry 2 --connect-timeout 20 -o {target} {url}",
                f"bash {target} </dev/null",
                f"touch {installed_marker(run.role)}",
            ]
        )
        + "\n"
    )


def run_installer_script(run: InstallerRun) -> str:
    """Source the environment, delete it, run the installer, record success: no secret here."""
    target = shlex.quote(run.script_path)
    return (
        f"set -a; . {INSTALLER_ENV}; rm -f {INSTALLER_ENV}; set +a; "
        f"bash {target} && touch {installed_marker(run.role)}"
    )


def prompts_from_config(config: object) -> dict[str, str]:
    """The installer's prompt patterns, with overrides from the `ccie.prompts` config."""
    prompts = dict(DEFAULT_PROMPTS)
    try:
        overrides = config.ccie.prompts  # type: ignore[attr-defined]
    except AttributeError:
        return prompts
    for key in prompts:
        if key in overrides:
            prompts[key] = str(overrides[key])
    return prompts


def run_installer(
    remote: Remote,
    run: InstallerRun,
    proxy_url: str,
    prompts: dict[str, str],
    out: LineStream,
) -> None:
    """Run the installer prepared by ``prepare_installer_script`` on a pty, answering its
    proxy questions; its output goes to ``out`` line by line."""
    watchers = [
        Responder(pattern=prompts["proxy_question"], response="y\n"),
        Responder(pattern=prompts["proxy_address"], response=proxy_url + "\n"),
    ]
    try:
        remote.root(
            run_installer_script(run),
            pty=True,
            watchers=watchers,
            out=out,
            timeout=INSTALLER_TIMEOUT,
            label=f"run {run.script_path}",
        )
    except Exception:
        # The installer's command deletes the environment file before the installer starts;
        # this covers a command that never got that far.
        with contextlib.suppress(Exception):
            remote.root(f"rm -f {INSTALLER_ENV}", check=False, label="remove the installer env")
        raise
