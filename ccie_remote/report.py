"""What a run shows: per-host progress while it runs, a summary table when it ends."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import TextIO

from ccie_remote.masking import mask


@dataclass
class HostResult:
    """How one host fared in a run."""

    name: str
    role: str
    status: str = "pending"  # changed, unchanged, failed, skipped, planned
    why: str = ""
    seconds: float = 0.0
    actions: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "skipped")


class Reporter:
    """Progress lines per host: a live view redrawn in place on a terminal, else plain lines.

    Plain lines are ``[host] message``; every line is masked before it is shown.
    """

    def __init__(
        self,
        names: list[str],
        stream: TextIO | None = None,
        live: bool | None = None,
        quiet: bool = False,
    ) -> None:
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.quiet = quiet  # show problems only: the task prints one table at the end
        self.names = names
        self.width = max((len(n) for n in names), default=0)
        self.current = dict.fromkeys(names, "waiting")
        self.lock = threading.Lock()
        self.drawn = 0

    def line(self, name: str, message: str, problem: bool = False) -> None:
        """A step on one host: the live view updates its row, plain mode prints a line."""
        if self.quiet and not problem:
            return
        message = mask(message)
        with self.lock:
            if not self.live:
                print(f"[{name}] {message}", file=self.stream, flush=True)
                return
            self.current[name] = message
            self._redraw()

    def finish(self) -> None:
        with self.lock:
            if self.live:
                self._redraw()
            self.drawn = 0

    def _clear(self) -> None:
        if self.live and self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0

    def _redraw(self) -> None:
        self._clear()
        for name in self.names:
            text = self.current[name][:100]
            self.stream.write(f"  {name.ljust(self.width)}  {text}\n")
        self.stream.flush()
        self.drawn = len(self.names)


def summary(results: list[HostResult]) -> str:
    """The table printed at the end of a run: host, role, result, why, seconds."""
    rows = [("HOST", "ROLE", "RESULT", "SECONDS", "WHY")]
    rows += [(r.name, r.role, r.status, f"{r.seconds:.1f}", r.why) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
        + "  "
        + row[4]
        for row in rows
    ]
    return mask("\n".join(line.rstrip() for line in lines))
