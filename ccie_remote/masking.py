"""Keep secrets off the screen and out of logs: every output goes through ``mask``."""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()
_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s\"']+@")


def register(*secrets: str) -> None:
    """Add values that must never be shown (the passphrase, proxy credentials)."""
    with _lock:
        _secrets.update(s for s in secrets if s and len(s) >= 3)


def mask(text: str) -> str:
    """``text`` with URL credentials and every registered secret replaced by ``***``."""
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


class MaskingFilter(logging.Filter):
    """A logging filter that masks secrets in every record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask(record.getMessage())
        record.args = None
        return True
