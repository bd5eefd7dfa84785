"""Running commands on one host as root, with secrets masked in every error and output line."""

from __future__ import annotations

import io
import logging
import shlex
import threading
from collections.abc import Callable, Sequence
from typing import Any

from fabric import Connection
from invoke.exceptions import CommandTimedOut
from invoke.watchers import StreamWatcher

from ccie_remote.errors import RemoteCommandError
from ccie_remote.masking import mask

log = logging.getLogger(__name__)


class LineStream(io.TextIOBase):
    """A writable stream that hands each complete output line to ``emit``, masked."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.buffer = ""
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            self.buffer += text.replace("\r\n", "\n").replace("\r", "\n")
            *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            self.emit(mask(line))
        return len(text)

    def flush(self) -> None:
        with self.lock:
            rest, self.buffer = self.buffer, ""
        if rest:
            self.emit(mask(rest))


class Remote:
    """One host's connection, and the count of commands run on it."""

    def __init__(self, name: str, connection: Connection) -> None:
        self.name = name
        self.connection = connection
        self.commands = 0

    def root(
        self,
        script: str,
        *,
        pty: bool = False,
        watchers: Sequence[StreamWatcher] = (),
        out: LineStream | None = None,
        timeout: int | None = None,
        check: bool = True,
        label: str | None = None,
    ) -> Any:
        """Run the ``sh`` script as root (``sudo -n``) and return Invoke's Result.

        Without a pty the script travels on stdin (``sh -s``), so file contents and secrets in
        it never show in a command line. A pty command (an installer that asks questions) has
        its script on the command line: such scripts must hold no secret.
        """
        self.commands += 1
        log.debug("%s: running %s", self.name, label or _first_line(script))
        kwargs: dict[str, Any] = {"hide": True, "warn": True, "pty": pty, "timeout": timeout}
        if pty:
            command = f"sudo -n sh -c {shlex.quote(script)}"
        else:
            command = "sudo -n sh -s"
            kwargs["in_stream"] = io.StringIO(script)
        if watchers:
            kwargs["watchers"] = list(watchers)
        if out is not None:
            kwargs["out_stream"] = out
            kwargs["err_stream"] = out
        try:
            result = self.connection.run(command, **kwargs)
        except CommandTimedOut as error:
            raise RemoteCommandError(
                self.name, label or _first_line(script), -1, f"timed out after {error.timeout} s"
            ) from None
        finally:
            if out is not None:
                out.flush()
        if check and result.exited != 0:
            tail = mask((result.stdout or "") + (result.stderr or ""))
            raise RemoteCommandError(
                self.name, mask(label or _first_line(script)), result.exited, tail[-2000:]
            )
        return result

    def login(self, script: str, *, label: str, timeout: int | None = 120) -> Any:
        """Run the ``sh`` script as the login user, in the environment a login session gets."""
        self.commands += 1
        log.debug("%s: running %s as the login user", self.name, label)
        try:
            return self.connection.run(
                "sh -s", in_stream=io.StringIO(script), hide=True, warn=True, timeout=timeout
            )
        except CommandTimedOut as error:
            raise RemoteCommandError(
                self.name, label, -1, f"timed out after {error.timeout} s"
            ) from None

    def close(self) -> None:
        self.connection.close()


def _first_line(script: str) -> str:
    line = script.strip().splitlines()[0] if script.strip() else script
    return line if len(line) < 120 else line[:117] + "..."
