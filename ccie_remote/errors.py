"""The errors ccie-remote raises, one root class and one branch per domain.

    CcieError                   anything the user should see as one line, not a traceback
    ├── InventoryError          the inventory file is missing, unreadable or invalid
    ├── LabError                the local Docker engine or a lab container misbehaved
    ├── HostError               something went wrong on one fleet host
    │   ├── HostKeyError        the host's key is unknown (strict) or changed
    │   ├── ConnectError        the host could not be reached or logged into
    │   └── RemoteCommandError  a command on the host exited non-zero
    ├── ManagedFileError        a file on a host cannot be merged (invalid JSON, broken block)
    └── UsageError              the command line or environment is incomplete

The fab entry point prints ``str(error)`` and exits with ``error.exit_code``.
"""

from __future__ import annotations


class CcieError(Exception):
    """Root of every error a user sees as a message rather than a traceback."""

    exit_code = 1


class InventoryError(CcieError):
    """The inventory is invalid; ``problems`` holds one line per problem."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class UsageError(CcieError):
    """A task was called without something it needs (an argument, a passphrase)."""

    exit_code = 2


class LabError(CcieError):
    """The lab could not be built, started or read."""


class HostError(CcieError):
    """A failure on one host; the message always starts with the host's name."""

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        self.reason = message
        super().__init__(f"{host}: {message}")


class HostKeyError(HostError):
    """The host presented a key that the policy refuses."""


class ConnectError(HostError):
    """The host could not be reached, or refused the login."""


class RemoteCommandError(HostError):
    """A remote command failed; keeps the (masked) command, exit code and output tail."""

    def __init__(self, host: str, command: str, exit_code: int, output_tail: str) -> None:
        self.command = command
        self.exited = exit_code
        self.output_tail = output_tail
        detail = f"`{command}` exited {exit_code}"
        if output_tail.strip():
            detail += ": " + " | ".join(output_tail.strip().splitlines()[-3:])
        super().__init__(host, detail)


class ManagedFileError(CcieError):
    """A managed file on a host holds something ccie-remote must not overwrite blindly."""
