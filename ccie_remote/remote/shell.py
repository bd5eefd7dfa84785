"""Running commands on one host as root, with secrets masked in every error and output line."""

from __future__ import annotations

import codecs
import io
import logging
import shlex
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paramiko
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


@dataclass(frozen=True)
class Result:
    """What a remote command printed, and its exit status."""

    exited: int
    stdout: str
    stderr: str


class Remote:
    """One host's open connection, and the commands run on it as root or as the login user."""

    def __init__(self, name: str, connection: Connection) -> None:
        self.name = name
        self.connection = connection

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
    ) -> Result:
        """Run the ``sh`` script as root (``sudo -n``).

        Without a pty the script travels on stdin (``sh -s``), so file contents and secrets in
        it never show in a command line. A pty command (an installer that asks questions) has
        its script on the command line: such scripts must hold no secret.
        """
        label = label or _first_line(script)
        if pty:
            result = self._run_on_pty(
                f"sudo -n sh -c {shlex.quote(script)}", watchers, out, timeout, label
            )
        else:
            result = self._exec("sudo -n sh -s", script, timeout, label, out)
        if check and result.exited != 0:
            tail = mask(result.stdout + result.stderr)
            raise RemoteCommandError(self.name, mask(label), result.exited, tail[-2000:])
        return result

    def login(self, script: str, *, label: str, timeout: int | None = 120) -> Result:
        """Run the ``sh`` script as the login user, in the environment a login session gets."""
        return self._exec("sh -s", script, timeout, label)

    def _exec(
        self,
        command: str,
        stdin: str,
        timeout: int | None,
        label: str,
        out: LineStream | None = None,
    ) -> Result:
        """Run ``command`` with ``stdin`` on a channel of the open connection.

        Paramiko directly, not Invoke: Invoke feeds stdin a byte per 10 ms, which turns a
        few kilobytes of script into seconds. With ``out``, stdout and stderr go to it as
        they come, merged.
        """
        log.debug("%s: running %s", self.name, label)
        transport = self.connection.client.get_transport()
        if transport is None or not transport.is_active():
            raise RemoteCommandError(self.name, label, -1, "the SSH connection is closed")
        errors: list[bytes] = []
        try:
            channel = transport.open_session(timeout=30)
            channel.settimeout(timeout)
            if out is not None:
                channel.set_combine_stderr(True)
            channel.exec_command(command)
            reader = threading.Thread(
                target=lambda: errors.append(channel.makefile_stderr("rb").read()), daemon=True
            )
            reader.start()
            channel.sendall(stdin.encode("utf-8"))
            channel.shutdown_write()
            stdout = _read_all(channel, out)
            exited = channel.recv_exit_status()
            reader.join(timeout=5)
            channel.close()
        except (OSError, paramiko.SSHException) as error:
            raise RemoteCommandError(
                self.name, label, -1, f"{type(error).__name__}: {error}"
            ) from None
        finally:
            if out is not None:
                out.flush()
        return Result(exited, stdout, b"".join(errors).decode("utf-8", errors="replace"))

    def _run_on_pty(
        self,
        command: str,
        watchers: Sequence[StreamWatcher],
        out: LineStream | None,
        timeout: int | None,
        label: str,
    ) -> Result:
        """Run ``command`` on a pty through Invoke, whose watchers answer prompts."""
        log.debug("%s: running %s on a pty", self.name, label)
        kwargs: dict[str, Any] = {
            "hide": True,
            "warn": True,
            "pty": True,
            "timeout": timeout,
            "in_stream": False,
            "watchers": list(watchers),
        }
        if out is not None:
            kwargs["out_stream"] = out
        try:
            result = self.connection.run(command, **kwargs)
        except CommandTimedOut as error:
            raise RemoteCommandError(
                self.name, label, -1, f"timed out after {error.timeout} s"
            ) from None
        finally:
            if out is not None:
                out.flush()
        return Result(result.exited, result.stdout or "", result.stderr or "")

    def close(self) -> None:
        self.connection.close()


def _read_all(channel: paramiko.Channel, out: LineStream | None) -> str:
    """Everything the channel's stdout says until it closes, passed on to ``out`` as it comes."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    chunks = []
    while data := channel.recv(32768):
        text = decoder.decode(data)
        chunks.append(text)
        if out is not None and text:
            out.write(text)
    chunks.append(decoder.decode(b"", final=True))
    return "".join(chunks)


def _first_line(script: str) -> str:
    line = script.strip().splitlines()[0] if script.strip() else script
    return line if len(line) < 120 else line[:117] + "..."
