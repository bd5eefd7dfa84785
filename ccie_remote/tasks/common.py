"""What every task shares: one-line errors, logging set-up, finding the inventory."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from invoke.exceptions import Exit

from ccie_remote import inventory, masking
from ccie_remote.errors import CcieError

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_INVENTORY = "inventory.toml"


def friendly(func: F) -> F:
    """Turn a CcieError into its message on stderr and the error's exit code, no traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CcieError as error:
            message = masking.mask(str(error))
            print(message if "\n" in message else f"error: {message}", file=sys.stderr)
            raise Exit(code=error.exit_code) from None
        except BrokenPipeError:
            # The reader went away (`fab render | head`): nothing left to say to it.
            sys.stderr.close()
            raise Exit(code=0) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


def inventory_path(given: str | None) -> Path:
    """The inventory a task reads: --inventory, else $CCIE_INVENTORY, else ./inventory.toml."""
    return Path(given or os.environ.get("CCIE_INVENTORY") or DEFAULT_INVENTORY)


def load_fleet(given: str | None) -> inventory.Fleet:
    """Read the inventory a task was pointed at, and register its secrets for masking."""
    fleet = inventory.load(inventory_path(given))
    masking.register(*fleet.secrets())
    return fleet


def setup_logging(verbose: bool) -> None:
    """INFO is one line per host action; -v adds the DEBUG detail. Secrets are masked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(masking.MaskingFilter())
    handler.setFormatter(
        logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        # paramiko logs every channel at INFO; only our own lines belong on the screen.
        logging.getLogger("paramiko").setLevel(logging.WARNING)
