"""HTTP for every provider: one rate limiter, dlt's retrying client, paging and fan-out.

A provider builds one `ProviderHttp` per run. Every request of the run, from any thread,
passes the same `RateLimiter`, so the provider's request budget holds however many requests
are in flight.

Concurrency is this module's and nothing else: the requests of a run's reads are made in the
account's one `ReadPool` (at most `MAX_CONCURRENCY` threads), the report reads and lookups of many
campaigns as jobs of `fetch_concurrently`, and each listing's pages in a thread of its own
(`ReadAhead`). dlt's resources are plain generators: dlt's extract thread maps pages into rows
and moves cursors, and waits when the page it asks for is not read yet.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import re
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import Context, ContextVar, copy_context
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlsplit

import orjson
import requests
from dlt.sources.helpers.requests import Client
from dlt.sources.helpers.rest_client.client import RESTClient
from dlt.sources.helpers.rest_client.paginators import BaseNextUrlPaginator
from dlt.sources.helpers.rest_client.typing import HTTPMethod
from requests import Request
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from requests.utils import get_environ_proxies

from sources.dlt_adapter import ConfigValueCannotBeCoercedException
from sources.errors import (
    ConfigurationError,
    Interrupted,
    ProviderError,
    QuotaExhausted,
    RequestCapReached,
    UnusableValue,
    wrong_type,
)
from sources.redaction import may_hold_credential, redact, shown, without_credentials

K = TypeVar("K")
T = TypeVar("T")
log = logging.getLogger("campaign_sync")

# the listing (`as_listing`) whose requests the current thread makes, counted in `ProviderHttp.listing_requests`;
# the reads of `fetch_concurrently` take it from the thread that starts them
_LISTING: ContextVar[str | None] = ContextVar("listing", default=None)

# set when the run is interrupted (the command line's SIGINT and SIGTERM handler): no request starts
# after it, every wait ends, and every read stops as at a used-up quota (`Interrupted`)
INTERRUPTION = threading.Event()
# set at a second signal, which stops the run at once: a thread that waits (an account's run, for the dataset)
# stops waiting, as the main thread stops
STOP_AT_ONCE = threading.Event()


class RateLimiter:
    """Spaces request starts at least `1 / requests_per_second` apart, across threads.

    A provider's throttling response slows it down for the rest of the run (`slow_down`): every
    thread waits out the response's `Retry-After`, and the interval between starts grows.
    """

    def __init__(self, requests_per_second: float) -> None:
        self.interval = self.budget_interval = 1.0 / requests_per_second if requests_per_second > 0 else 0.0
        self._next_start = 0.0
        self._slowed_at = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until this caller may start a request; return the (monotonic) time it starts."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + self.interval
        if start > now:
            INTERRUPTION.wait(start - now)
        if INTERRUPTION.is_set():
            raise Interrupted()
        return start

    def speed_up(self) -> None:
        """A response that was not throttled: win back a little of the rate a throttling response took."""
        if self.interval > self.budget_interval:
            with self._lock:
                self.interval = max(self.budget_interval, self.interval * THROTTLE_RECOVERY)

    def slow_down(self, retry_after: float | None, started: float) -> None:
        """A throttling response came to a request that started at `started`: pause every request for
        `retry_after` (or one interval), and lower the rate (an unlimited budget starts at
        THROTTLED_START_RATE), once for all the requests that were sent at the old rate. Each response
        that is not throttled wins a little back (`speed_up`): the rate settles under the limit."""
        with self._lock:
            if started >= self._slowed_at:
                slower = self.interval * THROTTLE_SLOWDOWN if self.interval else 1.0 / THROTTLED_START_RATE
                self.interval = max(self.budget_interval, min(slower, MAX_THROTTLED_INTERVAL))
                self._slowed_at = time.monotonic()
            pause = retry_after if retry_after is not None else self.interval
            self._next_start = max(self._next_start, time.monotonic() + min(pause, MAX_WAIT))


_shared_limiters: dict[tuple[str, float], RateLimiter] = {}
_shared_limiters_lock = threading.Lock()


def shared_budget(*identity: str) -> str:
    """Names the budget of what `identity` says (a provider and its application's key, say), without
    keeping the key: a digest."""
    return hashlib.blake2b("\0".join(identity).encode(), digest_size=16).hexdigest()


def shared_limiter(budget: str, requests_per_second: float) -> RateLimiter:
    """The one limiter of `budget` at `requests_per_second` in this process, which every client of it
    draws from (accounts configured with another rate have their own)."""
    with _shared_limiters_lock:
        return _shared_limiters.setdefault((budget, requests_per_second), RateLimiter(requests_per_second))


# how a throttled run slows down: the first rate of a budget that was unlimited, the factor on the
# interval per throttling response and per other response, the slowest rate, and how many throttling
# responses one request may meet before it fails (far more than any per-second limit needs)
THROTTLED_START_RATE = 10.0
THROTTLE_SLOWDOWN = 1.5
THROTTLE_RECOVERY = 0.95
MAX_THROTTLED_INTERVAL = 0.5
MAX_THROTTLED_ATTEMPTS = 50
# the longest a request waits on throttling responses (one `Retry-After`, or all of them): beyond it the
# read ends with an error (the next run reads it again); a wait longer than LOGGED_WAIT is logged
MAX_WAIT = 300.0
LOGGED_WAIT = 5.0
# the most pages one listing or report is followed through (10 million rows at 100 a page)
MAX_PAGES = 100_000


def retry_after_seconds(response: requests.Response) -> float | None:
    """The `Retry-After` of a response in seconds (a number of seconds; an HTTP date is not used here), or
    EmailOctopus v2's `X-RateLimit-Retry-After` (docs/providers/emailoctopus-v2.md § Limits)."""
    value = response.headers.get("Retry-After", response.headers.get("X-RateLimit-Retry-After"))
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


class RateLimitedAdapter(HTTPAdapter):
    """Holds every request to the budget: at most `max_in_flight` at once, starts spaced by the limiter.

    A throttling response (`is_throttled`) is not a failure: the limiter slows down and the request
    is sent again, without using up one of dlt's retry attempts.
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        limiter: RateLimiter,
        max_in_flight: int,
        is_throttled: Callable[[requests.Response], bool],
    ) -> None:
        # a connection returns to the pool only after its body is read, outside the semaphore
        super().__init__(pool_maxsize=2 * max_in_flight, pool_connections=4)
        self.provider = provider
        self.base = urlsplit(base_url)
        self.limiter = limiter
        self.in_flight = threading.BoundedSemaphore(max_in_flight)
        self.is_throttled = is_throttled
        self.sent = 0  # the requests this adapter sent, retries and throttled ones included
        self._sent_lock = threading.Lock()

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        """Send `request` within the budget, again after each throttling response (its wait logged when
        long); a wait beyond MAX_WAIT ends the request with an error. A request outside the API's base
        URL (another host, or a path that leaves the base path) is refused."""
        url = urlsplit(str(request.url))
        if (url.scheme, url.netloc) != (self.base.scheme, self.base.netloc) or not (
            f"{url.path}/".startswith(self.base.path) and not {".", ".."} & set(url.path.split("/"))
        ):
            raise ProviderError(f"{self.provider}: a request outside the API's base URL refused: "
                                f"{shown(str(request.url))}")
        waited = 0.0
        for _ in range(MAX_THROTTLED_ATTEMPTS):
            with self.in_flight:
                started = self.limiter.acquire()
                with self._sent_lock:
                    self.sent += 1
                response = super().send(request, *args, **kwargs)
            if not self.is_throttled(response):
                self.limiter.speed_up()
                return response
            response.close()
            wait = retry_after_seconds(response)
            waited += wait or 0.0
            if waited > MAX_WAIT:
                raise ProviderError(
                    f"{self.provider}: the provider asks to wait {waited:.0f}s (Retry-After), more than "
                    f"{MAX_WAIT:.0f}s, for {shown(str(request.url))}; this read ends, and the next run reads it again"
                )
            if wait is not None and wait > LOGGED_WAIT:
                log.info("%s: waiting %.0fs, as the provider asks (Retry-After)", self.provider, wait)
            self.limiter.slow_down(wait, started)
        return response


def segment(value: str) -> str:
    """A provider's id (`provider_id`) as one segment of a request path: percent-encoded, `/`, `?`, `#`
    and `%` included, so that it cannot leave its place; an empty, `.` or `..` one is refused."""
    if value in ("", ".", ".."):
        raise UnusableValue(f"{value!r} is not an id")
    return quote(value, safe="")


class BothAuth(AuthBase):
    """Several authentications on one request (an API key in the query and a bearer token, say)."""

    def __init__(self, *auths: AuthBase) -> None:
        self.auths = auths

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        for auth in self.auths:
            request = auth(request)
        return request


class LinkPaginator(BaseNextUrlPaginator):
    """Follows the next link each response carries (`next_of(body)`, None on the last page) verbatim.

    Only links to the base URL's host are followed (the credentials go along); a link that was
    already followed, or a next link that is not text (an object, a number), ends the read with an
    error instead of looping forever or reading on from somewhere else.
    """

    def __init__(self, provider: str, base_url: str, next_of: Callable[[Any], Any]) -> None:
        super().__init__()
        self.provider = provider
        self.host = urlsplit(base_url).netloc
        self.next_of = next_of
        self.followed: set[str] = set()

    def update_state(self, response: requests.Response, data: list[Any] | None = None) -> None:
        """Take the next link from the page's decoded body (`ProviderRestClient` hands it over whole)."""
        reference = self.next_of(data[0]) if data else None
        if reference is not None and not isinstance(reference, str):  # an object, a number: not a link
            raise ProviderError(f"{self.provider}: a next page link that is not a link: {shown(repr(reference))}")
        self._next_reference = reference or None

    def update_request(self, request: Request) -> None:
        """Point the request at the next link (the link's own parameters only), or refuse it."""
        super().update_request(request)
        if not self.has_next_page:
            return
        link = str(request.url)
        if urlsplit(link).netloc != self.host:
            raise ProviderError(f"{self.provider}: paging link to another host refused: {shown(link)}")
        if link in self.followed:
            raise ProviderError(f"{self.provider}: paging loops back to {shown(link)}")
        self.followed.add(link)


class ProviderRestClient(RESTClient):
    """dlt's `RESTClient` whose every response passes the provider's `check` and is decoded once.

    A page's data is its whole decoded body, as one item: the provider's `items_of` takes the
    rows from it and `LinkPaginator` the next link.
    """

    def __init__(self, http: ProviderHttp, session: requests.Session, auth: AuthBase | None) -> None:
        super().__init__(http.base_url, headers={"Accept": "application/json"}, auth=auth, session=session)
        self.http = http

    def extract_response(self, response: requests.Response, data_selector: Any) -> list[Any]:
        """The response's decoded body, after the provider's `check`."""
        return [self.http.body_of(response)]


@dataclass
class ProviderHttp:
    """A provider's HTTP access: base URL, auth, budget, retries and error mapping.

    `is_throttled(response)` says which responses are the provider's per-second limit: they slow
    the run down and are sent again (see `RateLimitedAdapter`);
    `check(response)` raises the provider's own error for a response that is not a success.
    `params` go with every request the client starts (not with the links it follows); `auth`
    with every request. Once a response says the daily quota is used up, no further request is
    sent in this run.
    """

    provider: str
    base_url: str
    requests_per_second: float
    max_concurrency: int
    is_throttled: Callable[[requests.Response], bool]
    check: Callable[[requests.Response], None]
    params: dict[str, str] = field(default_factory=dict)
    auth: AuthBase | None = None
    # the requests a day the provider allows (None: none documented), for `campaign-sync plan`
    daily_quota: int | None = None
    # the budget this client shares with others of this process (`shared_budget`: an application's,
    # a token endpoint's), or None for a limiter of its own; either is `requests_per_second`
    budget: str | None = None
    limiter: RateLimiter = field(init=False)
    # the values of responses that held what no database stores, replaced (`storable`), by field name
    replaced: Counter[str] = field(default_factory=Counter, init=False)
    quota_exhausted: QuotaExhausted | None = field(default=None, init=False)
    # `--max-requests`: how many requests this run may start (None: no cap), and how many it has
    max_requests: int | None = field(default=None, init=False)
    started: int = field(default=0, init=False)
    listing_requests: Counter[str] = field(default_factory=Counter, init=False)  # of `started`, by listing

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"{self.provider}: base URL {redact(self.base_url)!r} is not an http(s) URL")
        self.base_url = self.base_url.rstrip("/") + "/"
        if self.budget is None:
            self.limiter = RateLimiter(self.requests_per_second)
        else:
            self.limiter = shared_limiter(self.budget, self.requests_per_second)
        self.adapter = RateLimitedAdapter(
            self.provider, self.base_url, self.limiter, max(self.max_concurrency, 1), self.is_throttled
        )
        self.rest = ProviderRestClient(self, self._session(), self.auth)
        self.pool = ReadPool(self.max_concurrency, f"{self.provider}-read")
        self._started_lock = threading.Lock()

    def cap_requests(self, max_requests: int | None) -> None:
        """Stop this run's requests cleanly after `max_requests` (`--max-requests`), as a used-up quota does."""
        self.max_requests = max_requests

    def _session(self) -> requests.Session:
        """dlt's retrying session (5xx, connection errors and transient faults), its every attempt under the budget."""
        try:
            retrying = Client(
                raise_for_status=False,
                status_codes=tuple(range(500, 600)),
                retry_condition=lambda response, _exc: response is not None and self._is_transient(response),
            )
            retrying.configure()
        except ConfigValueCannotBeCoercedException as wrong:  # dlt's `runtime` settings of its requests
            raise wrong_type(wrong) from None
        session = retrying.session
        session.mount("http://", self.adapter)
        session.mount("https://", self.adapter)
        # the proxy and CA settings of the environment, read once: requests would walk all of
        # `os.environ` on every request, which costs more CPU than decoding the response
        session.proxies = get_environ_proxies(self.base_url)
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        session.trust_env = False
        return session

    def _is_transient(self, response: requests.Response) -> bool:
        # a 200 that is not JSON (cut off, empty, a proxy's page) is a transient fault too
        return self.is_throttled(response) or (response.status_code == 200 and _json_body(response) is _NOT_JSON)

    @property
    def requests_made(self) -> int:
        """How many HTTP requests (retries included) this client has sent."""
        return self.adapter.sent

    def body_of(self, response: requests.Response) -> Any:
        """The decoded JSON body of a response that passes the provider's `check`, its text storable
        (`storable`: what no database stores replaced, and counted in `replaced`)."""
        try:
            self.check(response)
        except QuotaExhausted as exhausted:
            self.quota_exhausted = exhausted
            raise
        body = _decode_json(self.provider, response)
        if not _MAYBE_UNSTORABLE.search(response.content):  # the JSON escapes of NUL and of surrogates
            return body
        with self._started_lock:
            return storable(body, self.replaced)

    def stopped(self) -> QuotaExhausted | None:
        """What stopped this run's requests: a used-up quota, `--max-requests`, or an interruption."""
        if self.quota_exhausted is None and INTERRUPTION.is_set():
            self.quota_exhausted = Interrupted()
        return self.quota_exhausted

    @contextmanager
    def _errors_mapped(self) -> Iterator[None]:
        """Stop once the quota is used up; connection failures become a redacted `ProviderError`."""
        stopped = self.stopped()
        if isinstance(stopped, Interrupted):
            raise Interrupted()
        if stopped is not None:
            raise QuotaExhausted(str(stopped))
        with self._started_lock:
            if self.max_requests is not None and self.started >= self.max_requests:
                self.quota_exhausted = RequestCapReached(
                    f"{self.provider}: stopped after --max-requests {self.max_requests} requests; what was read "
                    "is loaded, and the next run resumes from there"
                )
                raise self.quota_exhausted
            self.started += 1
            if (listing := _LISTING.get()) is not None:
                self.listing_requests[listing] += 1
        failure = None
        try:
            yield
        except requests.ConnectionError as exc:
            refused = "refused" in str(exc).lower()
            reason = "connection refused" if refused else f"{type(exc).__name__}: {shown(str(exc))}"
            failure = f"cannot reach {redact(self.base_url.rstrip('/'))}: {reason}"
        except requests.RequestException as exc:
            failure = f"request failed: {type(exc).__name__}: {shown(str(exc))}"
        if failure is not None:
            # raised outside the except block, so the original (unredacted) error is not chained
            raise ProviderError(f"{self.provider}: {failure}")

    def request(self, method: HTTPMethod, path_or_url: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """Send one request (retried on transient failures) and return its decoded JSON body."""
        with self._errors_mapped():
            response = self.rest.request(path_or_url, method=method, params={**self.params, **(params or {})},
                                         **kwargs)
        return self.body_of(response)

    def get(self, path_or_url: str, params: dict[str, Any] | None = None) -> Any:
        """GET an API path or URL and return its decoded JSON body, a credential it echoes masked."""
        return without_credentials(self.request("GET", path_or_url, params))

    def pages(
        self,
        path: str,
        params: dict[str, Any] | None,
        items_of: Callable[[Any], list[dict[str, Any]]],
        next_of: Callable[[Any], Any],
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield the items of every page, following the provider's next links (`next_of(body)`)."""
        paginator = LinkPaginator(self.provider, self.base_url, next_of)
        paging = self.rest.paginate(
            path,
            params={**self.params, **(params or {})},
            paginator=paginator,
            hooks={"response": []},  # responses are checked by the provider's `check`, not raise_for_status
            # a page's data is its whole body (`extract_response`): without a selector, dlt decodes each
            # read's first response once more to guess one
            data_selector="$",
        )
        previous = None
        for number in range(1, MAX_PAGES + 1):
            with self._errors_mapped():
                page = next(paging)  # one request
            items = items_of(page[0])
            if may_hold_credential(page.response.content):  # every EmailOctopus 1.6 page: its next link has the key
                items = without_credentials(items)  # the items only: the next link is followed as it is
            if items == previous:  # a next link that changes and a page that does not: endless
                raise ProviderError(f"{self.provider}: the paging of {shown(path)} repeats page {number - 1}; "
                                    "this read ends, and the next run reads it again")
            yield items
            if not paginator.has_next_page:
                return
            previous = items
        raise ProviderError(f"{self.provider}: {shown(path)} still has a next page after {MAX_PAGES} pages, the "
                            "most one read follows; this read ends, and the next run reads it again")


_NOT_JSON = object()
# in a JSON response, the only way to a character no database stores: an escaped NUL or surrogate
_MAYBE_UNSTORABLE = re.compile(rb"\\u(?:0000|[dD][89abcdefABCDEF])")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any, replaced: Counter[str], key: str = "") -> Any:
    """`value` (decoded JSON) with every NUL and lone surrogate, which PostgreSQL cannot store and no
    UTF-8 file can hold, replaced by U+FFFD; `replaced` counts them by the name of the field they were in."""
    if isinstance(value, str):
        if _UNSTORABLE.search(value) is None:
            return value
        replaced[key or "(a value)"] += 1
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, list):
        return [storable(item, replaced, key) for item in value]
    if isinstance(value, dict):
        return {storable(name, replaced, "(a field name)"): storable(item, replaced, str(name))
                for name, item in value.items()}
    return value


def error_entries(response: requests.Response) -> list[tuple[str, str]]:
    """`(error_key, error_message)` pairs of a Constant Contact error response: an array, or a single object."""
    try:
        body = response.json()
    except ValueError:
        return [("", response.text[:200])]
    entries = body if isinstance(body, list) else [body]
    return [
        (str(entry.get("error_key", entry.get("error", ""))), str(entry.get("error_message", "")))
        for entry in entries
        if isinstance(entry, dict)
    ]


# each response's decoded body, kept while the response lives: the retry condition and the reader both need it
_DECODED: weakref.WeakKeyDictionary[requests.Response, Any] = weakref.WeakKeyDictionary()


def _json_body(response: requests.Response) -> Any:
    """The decoded body, once per response (bytes that are not UTF-8 become U+FFFD), or _NOT_JSON."""
    if response not in _DECODED:
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:  # bytes that are not UTF-8, or JSON orjson refuses (NaN, huge integers)
            try:
                body = json.loads(response.content.decode("utf-8", errors="replace"))
            except ValueError:
                body = _NOT_JSON
        _DECODED[response] = body
    return _DECODED[response]


def _decode_json(provider: str, response: requests.Response) -> Any:
    body = _json_body(response)
    if body is _NOT_JSON:
        kind = "an empty body" if not response.content else response.headers.get("Content-Type", "unknown content")
        raise ProviderError(
            f"{provider}: response from {shown(response.url)} is not JSON ({kind}, HTTP {response.status_code})"
        )
    return body


@dataclass
class JobDone:
    """Marks the end of one job in `fetch_concurrently`: `error` is None when it completed."""

    error: BaseException | None = None


@dataclass
class Job(Generic[K]):
    """One paged read: a key that names it and a function that yields its pages.

    Its pages are read in `ReadPool` workers, which have no dlt context (`dlt.current`): what the
    read needs from dlt's state is given to it. A job must not fetch in its own pool: that raises
    `RuntimeError` (`fetch_concurrently`)."""

    key: K
    pages: Callable[[], Iterable[Any]]


# a worker with nothing to do for this long ends; the pool starts another when work comes
IDLE_WORKER_SECONDS = 1.0
# how many pages of a listing are read ahead of the resource that passes them on
LISTING_PAGES_AHEAD = 4


class ReadPool:
    """The worker threads that make one provider account's requests: at most `size` (the account's
    `MAX_CONCURRENCY`), however many campaigns, reports or lists the run reads.

    Work comes as steps (one page of one job, `_Fetch`); a worker takes the oldest step, so the
    reads of every resource share the workers in turn. A step never waits for a consumer: a
    `fetch_concurrently` whose consumer is behind stops scheduling its steps instead. Workers start
    as work comes and end after `IDLE_WORKER_SECONDS` without any.
    """

    def __init__(self, size: int, name: str) -> None:
        self.size = max(1, size)
        self.name = name
        self._steps: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0

    def in_worker(self) -> bool:
        """Whether the calling thread is one of this pool's workers."""
        return getattr(_worker_of, "pool", None) is self

    def submit(self, step: Callable[[], None]) -> None:
        """Run `step` in a worker, after the steps submitted before it."""
        self._steps.put(step)  # before the count is read: a worker that ends sees it (`_work`)
        with self._lock:
            if self._workers < self.size:
                self._workers += 1
                threading.Thread(target=self._work, daemon=True, name=f"{self.name}-{self._workers}").start()

    def _work(self) -> None:
        _worker_of.pool = self
        while True:
            try:
                step = self._steps.get(timeout=IDLE_WORKER_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._steps.empty():
                        self._workers -= 1
                        return
                continue
            step()
            del step  # a closed fetch is not kept alive (with its pages) while this worker waits for work


_worker_of = threading.local()


class _Fetch(Generic[K]):
    """One `fetch_concurrently`: its jobs' pages, read in a `ReadPool` and handed to the consumer in
    the order they arrive. At most `pool.size` of its jobs are read at once, each one page at a time,
    and at most `2 * pool.size` pages are read ahead of the consumer (the rest of its steps wait)."""

    def __init__(self, pool: ReadPool, jobs: Iterable[Job[K]]) -> None:
        self.pool = pool
        self.room = 2 * pool.size
        self.changed = threading.Condition()
        self.ready: deque[tuple[Job[K], Any]] = deque()
        self.not_started: deque[Job[K]] = deque(jobs)
        self.unfinished = {id(job): job for job in self.not_started}  # by id: a key need not be hashable
        self.waiting: deque[_JobPages[K]] = deque()  # started, their next page waiting for room
        self.in_flight = 0
        self.closed = False
        self.context = copy_context()  # the starting thread's: each job reads in a copy of it
        with self.changed:
            for _ in range(min(pool.size, len(self.not_started))):
                self._start_next()

    def _start_next(self) -> None:
        """Start the next job not started yet (lock held)."""
        self._schedule(_JobPages(self.not_started.popleft(), self.context.copy()))

    def _schedule(self, job_pages: _JobPages[K]) -> None:
        """Read the next page of `job_pages` now if there is room, else after the consumer takes one (lock held)."""
        if self.in_flight + len(self.ready) < self.room:
            self.in_flight += 1
            self.pool.submit(partial(self._step, job_pages))
        else:
            self.waiting.append(job_pages)

    def _step(self, job_pages: _JobPages[K]) -> None:
        if self.closed:
            return
        item = job_pages.next_page()
        with self.changed:
            self.in_flight -= 1
            if self.closed:
                return
            self.ready.append((job_pages.job, item))
            if not isinstance(item, JobDone):
                self._schedule(job_pages)
            elif self.not_started:
                self._start_next()
            self.changed.notify()

    def results(self) -> Iterator[tuple[K, Any]]:
        """Yield `(key, page)` as pages arrive, `(key, JobDone(...))` after each job. Interrupted, every
        job not done yet ends at once (`JobDone(Interrupted())`), without waiting for its request."""
        try:
            while self.unfinished:
                with self.changed:
                    while not self.ready and not INTERRUPTION.is_set():
                        self.changed.wait(0.1)
                    if INTERRUPTION.is_set():
                        break
                    job, item = self.ready.popleft()
                    if self.waiting and self.in_flight + len(self.ready) < self.room:
                        self._schedule(self.waiting.popleft())
                if isinstance(item, JobDone):
                    del self.unfinished[id(job)]
                yield job.key, item
            for job in list(self.unfinished.values()):  # interrupted
                yield job.key, JobDone(Interrupted())
        finally:
            with self.changed:  # the consumer stopped: its steps not begun are dropped
                self.closed = True
                self.ready.clear()
                self.waiting.clear()
                self.not_started.clear()


class _JobPages(Generic[K]):
    """A job being read: its page iterator, advanced by one worker at a time in a context of its own
    (a copy of the thread's that started the fetch: a listing's request count goes on, `as_listing`)."""

    def __init__(self, job: Job[K], context: Context) -> None:
        self.job = job
        self.context = context
        self.pages: Iterator[Any] | None = None

    def next_page(self) -> Any:
        """The job's next page, or `JobDone` (with the error that ended it, if any)."""
        try:
            if self.pages is None:
                self.pages = iter(self.context.run(self.job.pages))
            return self.context.run(next, self.pages)
        except StopIteration:
            return JobDone()
        except BaseException as exc:  # handed to the consumer, which decides; a worker never dies of a job
            return JobDone(exc)


def fetch_concurrently(pool: ReadPool, jobs: Iterable[Job[K]]) -> Iterator[tuple[K, Any]]:
    """Read paged jobs in `pool`'s workers and yield `(key, page)` as pages arrive.

    After a job's last page comes `(key, JobDone())`, or `(key, JobDone(error))` when it failed. The
    consumer waits for the next page (a plain generator: dlt's extract thread may be the one waiting).
    At most `2 * pool.size` pages of this fetch wait in memory; a run has a fetch per transformer
    generator dlt keeps open (at most dlt's `EXTRACT__MAX_PARALLEL_ITEMS`, 20), so its pages in memory
    are bounded by settings too. Closing the iterator drops the steps not begun. A job of the pool
    must not fetch in it again (it would wait on its own workers): that raises `RuntimeError`.
    """
    if pool.in_worker():
        raise RuntimeError("fetch_concurrently called from a job of the same pool: it would wait on its own workers")
    yield from _Fetch(pool, jobs).results()


def as_listing(listing: str, pages: Iterable[T]) -> Iterator[T]:
    """`pages`, their requests counted as `listing`'s (`ProviderHttp.listing_requests`): read them in a
    thread of their own (`ReadAhead`), which the count stays with."""
    _LISTING.set(listing)
    yield from pages


class ReadAhead(Generic[T]):
    """A listing's pages, read in a thread of its own up to `LISTING_PAGES_AHEAD` pages ahead of the
    consumer, which gets the listing's error raised. Its requests' waits do not hold up the consumer
    (dlt's extract thread), and it may itself fetch concurrently in the pool (a page of campaigns' details).

    Reading begins at `start`, or when the pages are first iterated. It stops when that iteration ends
    or is closed, at an interruption, or when the object is dropped without being read. `name` says
    what is read (in messages); one of the run's counted listings (`listing`) counts its requests
    (`as_listing`).

    The code behind `pages` must not use dlt's context (`dlt.current`), which that thread does not have.
    """

    def __init__(self, pages: Iterable[T], name: str, listing: str | None = None) -> None:
        self.name = name
        self.listing = listing
        self._pages = pages if listing is None else as_listing(listing, pages)
        self._ahead: queue.Queue[tuple[_Ahead, Any]] = queue.Queue(maxsize=2 * LISTING_PAGES_AHEAD)  # and their writes
        self._stop = threading.Event()
        self._started = False
        weakref.finalize(self, self._stop.set)  # the thread holds no reference to this object

    def start(self) -> None:
        """Begin reading, if not begun yet."""
        if not self._started:
            self._started = True
            reader = partial(_read_ahead, self._pages, self._ahead, self._stop)
            name = f"listing-{self.name}"
            threading.Thread(target=copy_context().run, args=(reader,), daemon=True, name=name).start()

    def __iter__(self) -> Iterator[T]:
        self.start()
        try:
            while not INTERRUPTION.is_set():
                try:
                    kind, item = self._ahead.get(timeout=0.1)
                except queue.Empty:
                    continue
                if kind is _Ahead.WRITE:  # the pages before it are handed on
                    item()
                elif kind is _Ahead.END:
                    if item is not None:
                        raise item
                    return
                else:
                    yield item
            raise Interrupted()
        finally:
            self._stop.set()


class _Ahead(Enum):
    """What `ReadAhead`'s thread puts: a page, a state write (`after_pages_handed_on`), the end."""

    PAGE = "page"
    WRITE = "write"
    END = "end"


# set in a `ReadAhead` thread: hands a state write to the consumer, in order with the pages
_STATE_WRITES: ContextVar[Callable[[Callable[[], None]], None] | None] = ContextVar("state_writes", default=None)


def after_pages_handed_on(write: Callable[[], None]) -> None:
    """Run `write`, a change of dlt state that the pages read so far justify (a cursor moved past
    them), once those pages are handed on to dlt: at once in dlt's thread, and in a `ReadAhead`
    listing when its consumer has taken them. Pages read ahead and never handed on (an interrupted
    run) thus leave the state as it was, and the next run reads them again."""
    hand_over = _STATE_WRITES.get()
    if hand_over is None:
        write()
    else:
        hand_over(write)


def _read_ahead(pages: Iterable[Any], ahead: queue.Queue[tuple[_Ahead, Any]], stop: threading.Event) -> None:
    """`ReadAhead`'s thread: put each page and each state write in order, then the end (with the error)."""

    def put(kind: _Ahead, item: Any) -> bool:
        while not stop.is_set() and not INTERRUPTION.is_set():
            try:
                ahead.put((kind, item), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def hand_over(write: Callable[[], None]) -> None:
        put(_Ahead.WRITE, write)

    _STATE_WRITES.set(hand_over)
    try:
        for page in pages:
            if not put(_Ahead.PAGE, page):
                return
    except BaseException as exc:  # raised in the consumer
        put(_Ahead.END, exc)
        return
    put(_Ahead.END, None)
