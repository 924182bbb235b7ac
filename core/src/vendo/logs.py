"""Logging set-up for the CLI and the server: one line per record, secrets never logged."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str = "INFO") -> None:
    """Send ``vendo.*`` logs to stderr as ``LEVEL name: message`` lines (idempotent)."""
    logger = logging.getLogger("vendo")
    logger.setLevel(level)
    if not any(getattr(h, "_vendo", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._vendo = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
