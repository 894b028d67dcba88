"""Calls that arrive together run as one call in a worker thread (one transaction, one
durable commit, one thread hand-off for all of them), each caller still getting its own
result or its own exception."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batched(Generic[Item, Result]):
    """`await batched(item)` runs `work([item, ...])` in a thread together with every item
    submitted meanwhile. `work` returns one result per item, in order: a value, or the
    exception that item met (raised to its caller alone). If `work` itself raises, every
    caller of that batch gets the exception."""

    def __init__(self, work: Callable[[list[Item]], Sequence[Result | BaseException]]) -> None:
        self.work = work
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        runner = self._runner
        if runner is not None and runner.get_loop() is not loop:  # an earlier event loop's
            self._runner, self._waiting = None, []
        future: asyncio.Future[Result] = loop.create_future()
        self._waiting.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        await asyncio.sleep(0)  # let the callers of this moment join the first batch
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                results = await asyncio.to_thread(self.work, [item for item, _ in batch])
            except Exception as exc:  # noqa: BLE001 - each caller of the batch learns of it
                results = [exc] * len(batch)
            except BaseException:  # cancelled: so are the callers still waiting
                for _, future in [*batch, *self._waiting]:
                    future.cancel()
                self._waiting = []
                raise
            if len(results) != len(batch):  # never leave a caller waiting forever
                results = [RuntimeError(f"{self.work!r} returned {len(results)} results "
                                        f"for {len(batch)} items")] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # its caller was cancelled
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
