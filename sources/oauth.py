"""OAuth2 access tokens from a rotating refresh token (Constant Contact v3 uses it,
docs/providers/constant-contact-v3.md § OAuth), for any provider whose refresh tokens rotate.

Every refresh returns a new refresh token and kills the old one, so the new one is written
to a file only its owner can read (atomically, under a lock shared with other runs) before
the new access token is used. The next run starts from that file, unless the configured
refresh token has changed since (the user authorized again), which then wins.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from requests.auth import AuthBase

from sources.errors import ConfigurationError, CredentialsRefused, ProviderError
from sources.http import ProviderHttp, shared_budget
from sources.redaction import redact, register_secret

try:
    import fcntl
except ImportError:  # not POSIX: runs are serialized by the thread lock only
    fcntl = None  # type: ignore[assignment]

# the token endpoint allows 1 request a second; a little under it absorbs clock jitter
TOKEN_REQUESTS_PER_SECOND = 0.9
# refresh this long before `expires_in` runs out (at most a tenth of the lifetime)
REFRESH_MARGIN_SECONDS = 300.0
def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class RefreshTokenFile:
    """The newest refresh token, in a file readable only by its owner, written atomically.

    The file also records a fingerprint (SHA-256) of the configured refresh token it
    descends from, so that a newly configured token is not shadowed by an older rotation.
    """

    def __init__(self, path: str | Path, configured: str, setting: str) -> None:
        self.path = Path(path).expanduser()
        self.configured = configured
        self.setting = setting

    def prepare(self) -> None:
        """Make sure the token can be kept, before a refresh kills the old one."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            probe, probe_path = tempfile.mkstemp(dir=self.path.parent, prefix=".probe-")
            os.close(probe)
            os.unlink(probe_path)
        except OSError as exc:
            raise ConfigurationError(
                f"{self.setting}: cannot write the rotated refresh token to {self.path} ({exc.strerror})"
            ) from None

    def load(self) -> str | None:
        """The persisted refresh token, if it descends from the configured one."""
        try:
            stored = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # unreadable or damaged: start again from the configured token
        if not isinstance(stored, dict) or not isinstance(stored.get("refresh_token"), str):
            return None
        register_secret(stored["refresh_token"])
        if stored.get("configured_sha256") != _fingerprint(self.configured):
            return None
        return str(stored["refresh_token"])

    def save(self, token: str) -> None:
        """Replace the file with `token`, mode 0600, in one rename."""
        body = json.dumps({"refresh_token": token, "configured_sha256": _fingerprint(self.configured)})
        descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(descriptor, "w") as handle:  # mkstemp creates it 0600
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise ProviderError(
                f"could not save the rotated refresh token to {self.path} ({exc.strerror}); the previous one is "
                f"no longer valid: authorize the app again and set {self.setting}"
            ) from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock that other processes refreshing with this file respect."""
        if fcntl is None:
            yield
            return
        lock_path = self.path.with_name(self.path.name + ".lock")
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            os.close(descriptor)


def _oauth_error(response: requests.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    return str(body.get("error", "")), str(body.get("error_description", ""))


class RefreshingAccessToken:
    """Access tokens for the API, refreshed from a rotating refresh token, one refresh at a time."""

    def __init__(
        self,
        provider: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        token_url: str,
        token_file: RefreshTokenFile,
        settings: dict[str, str],
    ) -> None:
        for secret in (client_id, client_secret, refresh_token):
            register_secret(secret)
        self.provider = provider
        self.token_url = token_url
        self.file = token_file
        self.settings = settings  # "client_id", "client_secret", "refresh_token" -> setting names
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        register_secret(basic)
        self._basic = f"Basic {basic}"
        self._lock = threading.Lock()
        self._access: str | None = None
        self._renew_at = 0.0
        self.refreshes = 0
        self.http = ProviderHttp(
            provider=provider,
            base_url=token_url,
            requests_per_second=TOKEN_REQUESTS_PER_SECOND,
            max_concurrency=1,
            budget=shared_budget("token endpoint", token_url),  # every attempt of every account, under its one limit
            is_throttled=lambda response: response.status_code == 429,
            check=self._check,
        )

    def get(self, stale: str | None = None) -> str:
        """A live access token; `stale` is one the API just refused, which forces a refresh."""
        with self._lock:
            fresh = self._access is not None and time.monotonic() < self._renew_at
            if not fresh or self._access == stale:
                self._refresh()
            assert self._access is not None
            return self._access

    def _refresh(self) -> None:
        self.file.prepare()
        with self.file.locked():
            # another run may have rotated the token since this one started: read it again
            current = self.file.load() or self.file.configured
            body = self.http.request(
                "POST",
                self.token_url,
                data={"grant_type": "refresh_token", "refresh_token": current},
                headers={"Authorization": self._basic},
            )
            access = body.get("access_token") if isinstance(body, dict) else None
            rotated = body.get("refresh_token") if isinstance(body, dict) else None
            register_secret(access)
            register_secret(rotated)
            if not isinstance(access, str) or not access:
                raise ProviderError(f"{self.provider}: the token endpoint responded without an access token")
            if isinstance(rotated, str) and rotated and rotated != current:
                self.file.save(rotated)  # before the new access token is used: the old one is dead
        lifetime = _seconds(body.get("expires_in"))
        self._renew_at = time.monotonic() + lifetime - min(REFRESH_MARGIN_SECONDS, lifetime / 10)
        self._access = access
        self.refreshes += 1

    def _check(self, response: requests.Response) -> None:
        if response.status_code == 200:
            return
        code, description = _oauth_error(response)
        if code == "invalid_grant":
            raise CredentialsRefused(
                self.provider,
                f"{self.settings['refresh_token']}: renew it by authorizing the app again (OAuth2 "
                "authorization-code flow) and setting the new refresh token there; it then replaces the "
                f"rotated one kept in {self.file.path}",
                "invalid_grant: the refresh token was already used, revoked, or left unused for 180 days",
            )
        if code in ("invalid_client", "unauthorized_client") or response.status_code == 401:
            raise CredentialsRefused(
                self.provider,
                f"{self.settings['client_id']} and {self.settings['client_secret']} (the app's API key and secret)",
                code or f"HTTP {response.status_code}",
            )
        detail = redact(f"{code} {description}".strip())
        raise ProviderError(f"{self.provider}: token endpoint responded HTTP {response.status_code} {detail}".strip())


def _seconds(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    # no usable `expires_in` (none, text, NaN, infinite, none left): assume an hour, and refresh on a 401 anyway
    return seconds if math.isfinite(seconds) and seconds > 0 else 3600.0


class RefreshingBearerAuth(AuthBase):
    """Sends the current access token; a response of 401 refreshes it once and sends the request again."""

    def __init__(self, tokens: RefreshingAccessToken) -> None:
        self.tokens = tokens

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.tokens.get()}"
        request.register_hook("response", self._refresh_on_401)
        return request

    def _refresh_on_401(self, response: requests.Response, **send_kwargs: Any) -> requests.Response:
        if response.status_code != 401 or response.connection is None:
            return response
        refused = str(response.request.headers.get("Authorization", "")).removeprefix("Bearer ")
        again = response.request.copy()
        again.headers["Authorization"] = f"Bearer {self.tokens.get(stale=refused)}"
        again.deregister_hook("response", self._refresh_on_401)  # a second 401 is the response
        response.close()
        retried: requests.Response = response.connection.send(again, **send_kwargs)
        retried.history.append(response)
        retried.request = again
        return retried
