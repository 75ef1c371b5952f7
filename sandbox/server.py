"""One HTTP server for all simulated provider APIs, with counters, limits, latency and faults."""

from __future__ import annotations

import io
import random
import re
import socket
import socketserver
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import IO, Any, cast
from wsgiref.handlers import SimpleHandler
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import orjson
from werkzeug.wrappers import Request, Response

from sandbox.dataset import Dataset, generate


class SandboxError(Exception):
    """An API error response: status, JSON body and headers."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response; values JSON has no type for (datetimes, ids) are written as text."""
    text = orjson.dumps(body, default=str, option=orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS)
    return Response(text, status=status, headers=headers, content_type="application/json")


class TokenBucket:
    """The provider side of a per-second limit: `rate` requests a second, bursts up to `capacity` (`rate`)."""

    def __init__(self, rate: float, capacity: float | None = None) -> None:
        self.rate = rate
        self.capacity = capacity  # None: `rate`, whatever it is set to
        self.tokens = capacity or rate
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        if self.rate <= 0:
            return True
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity or self.rate, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


@dataclass
class ProviderApp:
    """A simulated provider API mounted under a path prefix.

    `handle(request, path)` responds to one request (the prefix stripped) or raises SandboxError;
    `throttled()` is the provider's over-limit response; `settings(base_url)` the environment
    variables that point campaign-sync at it.
    """

    prefix: str
    dataset: Dataset
    handle: Callable[[Request, str], Response]
    throttled: Callable[[], SandboxError]
    requests_per_second: float
    settings: Callable[[str], dict[str, str]]
    simulator: Any = None  # a provider's own state that tests reach (quota, OAuth, ground truth)
    not_found: Callable[[], SandboxError] | None = None  # the provider's own 404 (for `Faults.gone_paths`)
    # whether a request carries this app's account's credentials (several accounts share a prefix)
    owns: Callable[[Request], bool] = lambda _request: True
    # a path whose response hands out a new credential and voids the old one (v3's token endpoint):
    # the faults that cut a response after it was made spare it, as no client could recover a token
    # rotated and then lost (docs/providers/constant-contact-v3.md § OAuth)
    rotates_credentials: str | None = None
    # another API of a provider that the sandbox serves beside the one `settings` points at: what it is,
    # and its settings (`Sandbox.offered`; `campaign-sync sandbox` prints them as a comment)
    offered: tuple[str, Callable[[str], dict[str, str]]] | None = None
    bucket: TokenBucket = field(init=False)

    def __post_init__(self) -> None:
        self.bucket = TokenBucket(self.requests_per_second)


@dataclass
class Faults:
    """Faults to inject into API responses (not the control endpoints), each a share of requests.

    `fail_paths` is a regular expression: matching API paths always return 500 (a persistent fault).
    `gone_paths` too: matching API paths return the provider's own 404, as for something deleted
    since it was listed (docs/providers/constant-contact-v2.md § Deleted campaigns: any call about one
    campaign may return 404).
    """

    error_rate: float = 0.0  # the share of requests that get 503
    burst_rate: float = 0.0  # start a burst of `burst_length` throttling responses (the provider's own 429/403)
    burst_length: int = 3
    reset_rate: float = 0.0  # the connection drops after half the body
    truncate_rate: float = 0.0  # 200 with the body cut off mid-JSON
    hang_rate: float = 0.0  # the response comes only after `hang_seconds`
    hang_seconds: float = 3.0
    html_rate: float = 0.0  # 200 with a proxy's HTML error page instead of JSON
    empty_rate: float = 0.0  # 200 with an empty body
    fail_paths: str = ""
    gone_paths: str = ""

    def pick(self, rng: random.Random) -> str | None:
        """Which transient fault (if any) this request gets."""
        roll = rng.random()
        for name in ("error", "burst", "reset", "truncate", "hang", "html", "empty"):
            roll -= getattr(self, f"{name}_rate")
            if roll < 0:
                return name
        return None


# `app(dataset, variants, requests_per_second, account)`: one account's API
AppFactory = Callable[[Dataset, dict[str, str], float, str], ProviderApp]
DEFAULT_ACCOUNT = "default"


@dataclass(frozen=True)
class SimulatedProvider:
    """A provider the sandbox serves: its name, how to build its app over a data set, its real rate limit,
    which data set it gets (`seed * 100 + seed_offset`, so that its data never depends on import order,
    or `data_of`: the same accounts as another provider's, as Constant Contact's two APIs serve), and
    whether its accounts share the application's limit (Constant Contact) or each key has its own."""

    name: str
    make_app: AppFactory
    requests_per_second: float
    seed_offset: int
    shared_limit: bool
    data_of: str | None


# every provider module registers itself here (`simulates`); `sandbox/__init__.py` imports them all
SIMULATED_PROVIDERS: dict[str, SimulatedProvider] = {}


def simulates(
    name: str, requests_per_second: float, seed_offset: int, shared_limit: bool = False, data_of: str | None = None
) -> Callable[[AppFactory], AppFactory]:
    """Register a provider module's `app(dataset, variants, requests_per_second, account)`: the sandbox serves it."""

    def register(make_app: AppFactory) -> AppFactory:
        SIMULATED_PROVIDERS[name] = SimulatedProvider(
            name, make_app, requests_per_second, seed_offset, shared_limit, data_of
        )
        return make_app

    return register


class PortInUse(OSError):
    """The sandbox's port is taken (another sandbox, or another program)."""


class Sandbox:
    """The simulated provider APIs on 127.0.0.1, in a background thread.

    Use as a context manager, or `start()` / `stop()`. `base_url(provider)` is what the
    provider's BASE_URL setting should be; `datasets[provider]` is the ground truth;
    `requests[provider]` counts the requests served (429s included). The data is generated
    around `clock` (default: now); the same seed, scale and clock give the same data.
    `accounts` names more accounts of a provider: each has its own credentials and data set
    (`datasets["<provider>/<account>"]`), and shares the application's limit where the provider does.
    Constant Contact's v3 API serves the same accounts as v2 (the same data set object), as the
    real APIs do (docs/providers/constant-contact-v3.md § Cross-references).
    `providers` names the data sets to make and serve (default: every provider's); an API that serves
    another's data set comes with it (a provider's second API version with its first): at the benchmarks' 10M-event
    scale each data set takes gigabytes and a minute to make.
    """

    def __init__(
        self,
        seed: int = 7,
        scale: str | tuple[int, int] = "small",
        port: int = 0,
        latency: float = 0.0,
        requests_per_second: dict[str, float] | None = None,
        variants: dict[str, str] | None = None,
        faults: Faults | None = None,
        clock: datetime | None = None,
        accounts: dict[str, list[str]] | None = None,
        providers: Iterable[str] | None = None,
    ) -> None:
        self.seed, self.port, self.latency = seed, port, latency
        self.variants = dict(variants or {})
        self.faults = faults or Faults()
        rates = requests_per_second or {}
        self.apps: dict[str, ProviderApp] = {}
        self.datasets: dict[str, Dataset] = {}
        wanted = set(providers) if providers is not None else set(SIMULATED_PROVIDERS)
        for simulated in sorted(SIMULATED_PROVIDERS.values(), key=lambda provider: provider.seed_offset):
            if simulated.name not in wanted and simulated.data_of not in wanted:
                continue
            rate = rates.get(simulated.name, simulated.requests_per_second)
            named = (accounts or {}).get(simulated.name, [])
            for index, account in enumerate([DEFAULT_ACCOUNT, *named]):
                key = simulated.name if account == DEFAULT_ACCOUNT else f"{simulated.name}/{account}"
                shared = simulated.data_of and self.datasets.get(key.replace(simulated.name, simulated.data_of, 1))
                dataset = shared or generate(seed * 100 + simulated.seed_offset + 10 * index, scale, clock)
                self.apps[key] = simulated.make_app(dataset, self.variants, rate, account)
                self.datasets[key] = dataset
                if simulated.shared_limit and index:  # one budget for the application's accounts
                    application = self.apps[simulated.name]
                    self.apps[key].bucket = application.bucket
                    self.apps[key].simulator.share_application(application.simulator)
        self.requests: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self.paths: Counter[str] = Counter()
        # by app: the (monotonic) times of the first and the latest request it served
        self.served_during: dict[str, list[float]] = {}
        self.faults_served: Counter[str] = Counter()
        self._burst_left: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # ---- control ----
    def start(self) -> Sandbox:
        """Serve; a port in use is PortInUse (and what the simulators made is removed)."""
        if self.port:  # a plain message, and nothing made is left behind
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", self.port))
                except OSError as error:
                    self.stop()
                    raise PortInUse(f"port {self.port} is in use ({error.strerror}): stop what uses it, "
                                    "or choose another --port") from None
        self._server = _Server(("127.0.0.1", self.port), _KeepAliveHandler)
        self._server.set_app(self.wsgi)
        self.port = self._server.server_port
        # stop() waits for the loop to look up: a short poll lets a test (or the demo) end without half a second's wait
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="sandbox"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, and remove what the simulators keep on disk (a rotated refresh token)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for app in self.apps.values():
            close = getattr(app.simulator, "close", None)
            if close is not None:
                close()

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C in the command line)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def base_url(self, provider: str) -> str:
        return self.url + self.apps[provider].prefix

    def advance(self, hours: float = 24) -> None:
        """Move every provider's clock forward: new activity and campaigns appear."""
        for dataset in {id(dataset): dataset for dataset in self.datasets.values()}.values():
            dataset.advance(timedelta(hours=hours))

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.served_during.clear()
            self.throttled.clear()
            self.paths.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "throttled": dict(self.throttled),
            "faults": dict(self.faults_served),
            "paths": dict(self.paths),
            "served_during": dict(self.served_during),
        }

    def environment(self) -> dict[str, str]:
        """The settings that point campaign-sync at this sandbox, credentials included."""
        env = {}
        for name, app in self.apps.items():
            env.update(app.settings(self.base_url(name)))
        return env

    def offered(self) -> list[tuple[str, dict[str, str]]]:
        """The other APIs this sandbox serves, each with what it is and the settings that point campaign-sync
        at it instead (a provider's second API version)."""
        return [(app.offered[0], app.offered[1](self.base_url(name))) for name, app in self.apps.items()
                if app.offered is not None and "/" not in name]

    # ---- serving ----
    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        response = self._respond(request)
        return response(environ, start_response)

    def _respond(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/_sandbox/"):
            return self._control(request, path.removeprefix("/_sandbox/"))
        served = [(name, app) for name, app in self.apps.items() if path.startswith(app.prefix + "/")]
        if not served:
            return json_response({"error": "no such sandbox path"}, 404)
        # the account whose credentials the request carries; else the default one, which refuses them
        name, app = next(((name, app) for name, app in served if "/" in name and app.owns(request)), served[0])
        return self._serve(name, app, request, path.removeprefix(app.prefix))

    def _serve(self, name: str, app: ProviderApp, request: Request, path: str) -> Response:
        with self._lock:
            self.requests[name] += 1
            now = time.monotonic()
            self.served_during.setdefault(name, [now, now])[1] = now
            self.paths[f"{name} {request.method} {path}"] += 1
            fault = self.faults.pick(self._rng)
            if fault == "burst":
                self._burst_left[name] = self.faults.burst_length
            throttle_burst = self._burst_left[name] > 0
            self._burst_left[name] -= throttle_burst
            if fault:
                self.faults_served[fault] += 1
        if self.latency:
            time.sleep(self.latency)
        if fault == "hang":
            time.sleep(self.faults.hang_seconds)
        try:
            if throttle_burst or not app.bucket.take():
                with self._lock:
                    self.throttled[name] += 1
                raise app.throttled()
            if self.faults.fail_paths and re.search(self.faults.fail_paths, path):
                raise SandboxError(500, {"error": "persistent injected fault"})
            if self.faults.gone_paths and re.search(self.faults.gone_paths, path) and app.not_found is not None:
                raise app.not_found()
            if fault == "error":
                raise SandboxError(503, {"error": "injected fault"})
            if fault == "html":
                return Response("<html><body><h1>502 Bad Gateway</h1></body></html>", 200, content_type="text/html")
            if fault == "empty":
                return Response(b"", 200, content_type="application/json")
            response = app.handle(request, path)
        except SandboxError as error:
            return json_response(error.body, error.status, error.headers)
        if fault in ("truncate", "reset") and path == app.rotates_credentials:
            return response
        if fault == "truncate":
            body = response.get_data()
            response.set_data(body[: len(body) // 2])
        elif fault == "reset":
            return _dropped_midway(response)
        return response

    def _control(self, request: Request, action: str) -> Response:
        if action == "stats":
            return json_response(self.stats())
        if action == "environment":  # the sandbox's own (made-up) credentials, for another process
            return json_response(self.environment())
        if action == "advance" and request.method == "POST":
            self.advance(float(request.args.get("hours", 24)))
            return json_response({"advanced_hours": float(request.args.get("hours", 24))})
        if action == "reset" and request.method == "POST":
            self.reset_counts()
            return json_response({"reset": True})
        return json_response({"error": f"unknown control {action}"}, 404)


class _ConnectionDropped(Exception):
    """Raised mid-body to make the server drop the connection (an injected fault)."""


def _dropped_midway(response: Response) -> Response:
    body = response.get_data()

    def half_then_drop() -> Iterator[bytes]:
        yield body[: len(body) // 2]
        raise _ConnectionDropped

    dropped = Response(half_then_drop(), response.status_code, content_type=response.content_type)
    dropped.headers["Content-Length"] = str(len(body))
    return dropped


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """A thread per connection; a client keeps its connection for its next requests (HTTP/1.1), as the
    providers' servers let it."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Nothing printed: a client that went away (after an injected hang) is expected."""


class _Response(SimpleHandler):
    """One response; it says whether the connection can serve the next request."""

    keeps_alive = False

    def send_preamble(self) -> None:
        headers = getattr(self, "headers", None)  # set by start_response (wsgiref leaves it undeclared)
        self.keeps_alive = headers is not None and "Content-Length" in headers
        super().send_preamble()

    def handle_error(self) -> None:  # the app failed, or broke its response off midway (`_dropped_midway`)
        self.keeps_alive = False
        super().handle_error()


class _KeepAliveHandler(WSGIRequestHandler):
    """One connection's requests, one after the other (HTTP/1.1 keep-alive), each through the WSGI app; no
    access or error log: request URLs carry API keys, and injected faults are expected. A response broken off
    midway, or without a length, closes the connection."""

    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle connection's thread ends
    wbufsize = -1  # a response goes out whole when it is flushed (wsgiref flushes it), not header by header,
    disable_nagle_algorithm = True  # and at once: no wait for the client's acknowledgement of the previous one

    def handle(self) -> None:
        BaseHTTPRequestHandler.handle(self)  # until the client closes, or a request says to

    def handle_one_request(self) -> None:
        self.close_connection = True
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline or not self.parse_request():
                return
            environ = self.get_environ()
            length = int(self.headers.get("Content-Length") or 0)
            body = io.BytesIO(self.rfile.read(length))  # read whole: the next request follows it
            response = _Response(body, cast(IO[bytes], self.wfile), io.StringIO(), environ, multithread=True)
            response.http_version = "1.1"
            response.run(self.server.get_app())  # type: ignore[attr-defined]
        except OSError:  # the client went away
            return
        self.close_connection = self.close_connection or not response.keeps_alive

    def log_message(self, format: str, *args: Any) -> None:
        pass
