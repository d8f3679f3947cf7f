"""Log set-up: JSON lines (default) or text, at the level from the environment.

kopf's own JSON formatter is used, so every line of the operator and of kopf has the same shape
(``message``, ``levelname``, ``timestamp`` and the object it is about under ``object``).
"""

from __future__ import annotations

import logging
import os

import kopf

LOG_FORMAT_ENV = "TENSORONE_LOG_FORMAT"
LOG_LEVEL_ENV = "TENSORONE_LOG_LEVEL"
LOG_FORMATS = {"json": kopf.LogFormat.JSON, "text": kopf.LogFormat.FULL}


def configure_logging(log_format: str | None = None, level: str | None = None) -> None:
    """Configure the root logger from arguments or TENSORONE_LOG_FORMAT / TENSORONE_LOG_LEVEL."""
    chosen_format = (log_format or os.environ.get(LOG_FORMAT_ENV) or "json").lower()
    if chosen_format not in LOG_FORMATS:
        raise ValueError(f"{LOG_FORMAT_ENV} must be one of {', '.join(LOG_FORMATS)}, got {chosen_format!r}")
    chosen_level = (level or os.environ.get(LOG_LEVEL_ENV) or "INFO").upper()
    if chosen_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError(f"{LOG_LEVEL_ENV} must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {chosen_level!r}")
    kopf.configure(log_format=LOG_FORMATS[chosen_format], log_refkey="object", verbose=chosen_level == "DEBUG")
    logging.getLogger().setLevel(chosen_level)
    # aiohttp's access log would print every API call at INFO.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
