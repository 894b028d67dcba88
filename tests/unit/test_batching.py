"""Batched: calls of one moment share one call in a thread; each caller gets its own result."""

from __future__ import annotations

import asyncio
import threading

import pytest

from engine.services.batching import Batched


def test_calls_of_one_moment_run_as_one_batch_and_each_gets_its_result() -> None:
    batches: list[list[int]] = []

    def work(items: list[int]) -> list[int | Exception]:
        batches.append(items)
        return [ValueError(f"no {i}") if i == 3 else i * 10 for i in items]

    async def main() -> list[object]:
        batched = Batched(work)
        return await asyncio.gather(*(batched(i) for i in range(5)), return_exceptions=True)

    results = asyncio.run(main())
    assert batches == [[0, 1, 2, 3, 4]]
    assert results[:3] == [0, 10, 20] and results[4] == 40
    assert isinstance(results[3], ValueError) and str(results[3]) == "no 3"


def test_calls_arriving_during_a_batch_form_the_next_one() -> None:
    batches: list[list[str]] = []
    started, release = threading.Event(), threading.Event()

    def work(items: list[str]) -> list[str]:
        batches.append(items)
        started.set()
        release.wait(10)
        return [i.upper() for i in items]

    async def main() -> list[str]:
        batched = Batched(work)
        first = asyncio.ensure_future(batched("a"))
        await asyncio.to_thread(started.wait, 10)  # the batch of "a" is running
        rest = [asyncio.ensure_future(batched(x)) for x in "bc"]
        await asyncio.sleep(0)
        release.set()
        return [await first, *[await r for r in rest]]

    assert asyncio.run(main()) == ["A", "B", "C"]
    assert batches == [["a"], ["b", "c"]]


def test_an_error_of_the_whole_batch_reaches_every_caller() -> None:
    def work(items: list[int]) -> list[int]:
        raise OSError("disk full")

    async def main() -> None:
        batched = Batched(work)
        results = await asyncio.gather(batched(1), batched(2), return_exceptions=True)
        assert [str(r) for r in results] == ["disk full", "disk full"]
        with pytest.raises(OSError, match="disk full"):
            await batched(3)  # and the next batch runs (and fails) too

    asyncio.run(main())
