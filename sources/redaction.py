"""Keeps credentials out of every log line, error message and stored URL.

Secrets are registered once, when a provider client is built. Every log record created
afterwards, by any logger (urllib3 logs full URLs at DEBUG), has them replaced by `***`, in
its message and in the text of its traceback; the data a provider sends has them masked too
(`without_credentials`), should it echo one.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

import orjson

MASK = "***"
_SECRET_PARAMS = re.compile(r"((?:api_key|access_token|refresh_token|client_secret)=)[^&\s\"']+", re.IGNORECASE)
_USER_INFO = re.compile(r"(://[^/:@\s]+:)[^@/\s]+@")  # the password in scheme://user:password@host
_lock = threading.Lock()
_secrets: set[str] = set()
# the credentials sent to providers, which a provider could echo in its data (`without_credentials`); shorter
# ones are masked in logs only: in data, a short value would be masked inside ordinary words and addresses
_credentials: set[str] = set()
CREDENTIAL_CHARACTERS = 8
_installed = False
_TRACEBACKS = logging.Formatter()


def register_secret(value: str | None, sent_to_providers: bool = True) -> None:
    """Mask `value` (and its URL-encoded forms) in logs and in `redact()` from now on; in the data that
    providers send too (`without_credentials`), unless it is never `sent_to_providers`."""
    if not value or len(value) < 4:
        return
    forms = {value, quote(value, safe=""), quote_plus(value)}
    with _lock:
        _secrets.update(forms)
        if sent_to_providers and len(value) >= CREDENTIAL_CHARACTERS:
            _credentials.update(forms)
    _install_log_filter()


def redact(text: str) -> str:
    """Return `text` with every registered secret and every credential URL parameter masked."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return _USER_INFO.sub(rf"\1{MASK}@", _SECRET_PARAMS.sub(rf"\1{MASK}", text))


def may_hold_credential(body: bytes) -> bool:
    """Whether a response's bytes may hold a credential sent to a provider: a fast test before
    `without_credentials`. Bytes with a JSON escape (`\\/`, `\\u0041`) may hold one written otherwise."""
    credentials = tuple(_credentials)  # a copy: another thread may add one meanwhile
    return bool(credentials) and (b"\\" in body or any(credential.encode() in body for credential in credentials))


def without_credentials(value: Any) -> Any:
    """Decoded JSON with every credential sent to a provider masked in its text (names included): a provider
    that echoes one in its data (a URL with the API key) must not put it into a table or the pipeline state.
    The value itself when none is in it (one encoding of it tells)."""
    credentials = sorted(_credentials, key=len, reverse=True)
    try:
        text = orjson.dumps(value)
        if not any(credential.encode() in text for credential in credentials):
            return value
    except orjson.JSONEncodeError:  # an integer past 64 bits (decoded by the standard library): look at each value
        pass
    return _masked(value, credentials)


def _masked(value: Any, credentials: list[str]) -> Any:
    if isinstance(value, str):
        for credential in credentials:
            value = value.replace(credential, MASK)
        return value
    if isinstance(value, list):
        return [_masked(item, credentials) for item in value]
    if isinstance(value, dict):
        return {_masked(name, credentials): _masked(item, credentials) for name, item in value.items()}
    return value


# what a terminal must not get raw from a provider: control characters (C0, DEL, C1), bidirectional
# overrides, embeddings, isolates and marks (text that reorders what follows it), and lone surrogates
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# how much of a provider's text a message shows, and the most a line of output does
SHOWN_CHARACTERS = 200
LINE_CHARACTERS = 1000


def printable(text: str, limit: int = SHOWN_CHARACTERS) -> str:
    """Provider text fit for a message: characters that would steer the terminal written as `\\uXXXX`,
    and cut to `limit` characters (saying how long it was)."""
    cut = text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
    return _UNPRINTABLE.sub(lambda found: f"\\u{ord(found[0]):04x}", cut)


def shown(text: str) -> str:
    """A provider's text (a response's message, a URL) for a message: redacted, escaped and shortened."""
    return printable(redact(text))


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
