"""The account's `ReadPool` and `fetch_concurrently` on their own, with jobs that stand for paged reads:
every job ends once, in order within itself, on at most `size` threads, and no job can wedge the pool."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator

from sources.http import Job, JobDone, ReadPool, fetch_concurrently


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
