"""The account's `ReadPool` and `fetch_concurrently` on their own, with jobs that stand for paged reads:
every job ends once, in order within itself, on at most `size` threads, and no job can wedge the pool.
And a listing read ahead (`ReadAhead`): its state writes wait for the pages before them to be taken."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator

from sources.http import Job, JobDone, ReadAhead, ReadPool, after_pages_handed_on, fetch_concurrently


def pages_of(job_id: int, count: int, seen: set[str]) -> Iterator[list[str]]:
    for number in range(count):
        seen.add(threading.current_thread().name)
        time.sleep(0.001)
        yield [f"{job_id}:{number}"]


def test_every_job_ends_once_its_pages_in_order_on_at_most_size_threads():
    pool, seen = ReadPool(3, "test-read"), set()
    jobs = [Job(job_id, lambda job_id=job_id: pages_of(job_id, job_id % 7, seen)) for job_id in range(60)]
    pages, ends = defaultdict(list), Counter()
    for key, item in fetch_concurrently(pool, jobs):
        if isinstance(item, JobDone):
            assert item.error is None
            ends[key] += 1
        else:
            assert ends[key] == 0  # no page after its job's end
            pages[key].append(item[0])
    assert ends == Counter(range(60))
    assert {key: len(found) for key, found in pages.items()} == {j: j % 7 for j in range(60) if j % 7}
    assert all(found == sorted(found, key=lambda page: int(page.split(":")[1])) for found in pages.values())
    assert len(seen) <= 3 and all(name.startswith("test-read-") for name in seen)


def test_a_job_that_raises_anything_ends_as_its_error_and_the_pool_reads_on():
    pool = ReadPool(1, "test-read")

    def exits() -> Iterator[list[str]]:
        yield ["first"]
        raise SystemExit(3)

    items = list(fetch_concurrently(pool, [Job("exits", exits)]))
    assert items[0] == ("exits", ["first"])
    assert isinstance(items[1][1], JobDone) and isinstance(items[1][1].error, SystemExit)
    # the one worker did not die with it: a later fetch on the same pool is read
    assert list(fetch_concurrently(pool, [Job("later", lambda: iter([["page"]]))])) == [
        ("later", ["page"]), ("later", JobDone()),
    ]


def test_a_job_that_fetches_in_its_own_pool_fails_instead_of_waiting_on_itself():
    pool = ReadPool(1, "test-read")

    def nested() -> Iterator[list[str]]:
        yield from (page for _key, page in fetch_concurrently(pool, [Job("inner", lambda: iter([["x"]]))]))

    ((key, done),) = list(fetch_concurrently(pool, [Job("outer", nested)]))
    assert key == "outer" and isinstance(done.error, RuntimeError)


def test_a_listing_read_ahead_writes_its_state_only_for_the_pages_taken():
    state: dict[str, int] = {}
    read: list[int] = []

    def listing() -> Iterator[int]:
        for number in range(1, 6):
            read.append(number)
            yield number
            after_pages_handed_on(lambda number=number: state.__setitem__("cursor", number))

    pages = iter(ReadAhead(listing(), "test-listing"))
    assert next(pages) == 1
    deadline = time.monotonic() + 5
    while len(read) < 5 and time.monotonic() < deadline:  # the thread reads on, ahead of the consumer
        time.sleep(0.01)
    assert read == [1, 2, 3, 4, 5] and state == {}
    assert next(pages) == 2
    assert state == {"cursor": 1}  # page 1 was handed on before page 2 was taken
    pages.close()  # the consumer stops: pages 3 to 5 were read, never taken, and move nothing
    time.sleep(0.3)
    assert state == {"cursor": 1}

    state.clear()
    assert list(ReadAhead(listing(), "test-listing")) == [1, 2, 3, 4, 5]
    assert state == {"cursor": 5}  # read whole: every write made, the last after the last page
    after_pages_handed_on(lambda: state.__setitem__("cursor", 6))  # outside a listing thread: at once
    assert state == {"cursor": 6}
