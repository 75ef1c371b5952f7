"""Keeps credentials out of every log line, error message and stored URL.

Secrets are registered once, when a provider client is built. Every log record created
afterwards, by any logger (urllib3 logs full URLs at DEBUG), has them replaced by `***`, in
its message and in the text of its traceback.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import quote, quote_plus

MASK = "***"
_SECRET_PARAMS = re.compile(r"((?:api_key|access_token|refresh_token|client_secret)=)[^&\s\"']+", re.IGNORECASE)
_USER_INFO = re.compile(r"(://[^/:@\s]+:)[^@/\s]+@")  # the password in scheme://user:password@host
_lock = threading.Lock()
_secrets: set[str] = set()
_installed = False
_TRACEBACKS = logging.Formatter()


def register_secret(value: str | None) -> None:
    """Mask `value` (and its URL-encoded forms) in logs and in `redact()` from now on."""
    if not value or len(value) < 4:
        return
    with _lock:
        _secrets.update({value, quote(value, safe=""), quote_plus(value)})
    _install_log_filter()


def redact(text: str) -> str:
    """Return `text` with every registered secret and every credential URL parameter masked."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return _USER_INFO.sub(rf"\1{MASK}@", _SECRET_PARAMS.sub(rf"\1{MASK}", text))


def _install_log_filter() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    make_record = logging.getLogRecordFactory()

    def redacting_record(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: logging reports it when the record is emitted
            message = ""
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info:  # a traceback carries exception messages (a URL with its key) too
            record.exc_text = redact(_TRACEBACKS.formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    logging.setLogRecordFactory(redacting_record)
