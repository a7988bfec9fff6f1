"""Assignments as the API takes them: the requests waiting for one rotation go in one transaction.

An assignment's transaction is serial per rotation (the rotation's row lock; SQLite's single
writer). With one transaction and one worker thread per request, most of an assignment went
on what every transaction costs (the lock's round trip, the commit) and on sixteen threads
queueing for the lock and the GIL, while the lock's holder waited its turn for the GIL
(bench.api's profile). Here the requests that arrive while a rotation's transaction is under
way wait on the event loop and are then handed, in arrival order, to one worker thread, which
makes them in one transaction (`RotationEngine.assign_many`). Each is answered as if made
alone after the ones before it; a replay still gets its member, and a refusal reaches only
its own caller. At most one batch per rotation is under way; rotations go in parallel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from starlette.concurrency import run_in_threadpool

from syncd.service.rotations import Assignment, AssignmentRequest, NobodyEligible

__all__ = ["MAX_BATCH", "AssignDesk"]

MAX_BATCH = 100  # requests per transaction: a long one holds the rotation's lock as long

Waiting = tuple[AssignmentRequest, "asyncio.Future[Assignment]"]
AssignMany = Callable[[str, Sequence[AssignmentRequest]], list[Assignment | NobodyEligible]]


class AssignDesk:
    """Batches of assignment requests per rotation, made by ``assign_many``. Event loop only."""

    def __init__(self, assign_many: AssignMany, *, max_batch: int = MAX_BATCH) -> None:
        self.assign_many = assign_many
        self.max_batch = max_batch
        self._waiting: dict[str, list[Waiting]] = {}
        self._serving: set[asyncio.Task[None]] = set()

    async def assign(self, rotation_id: str, request: AssignmentRequest) -> Assignment:
        """The answer to ``request``: its assignment; raises what refused it."""
        future: asyncio.Future[Assignment] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.get(rotation_id)
        if waiting is None:  # no batch under way for this rotation: one starts
            self._waiting[rotation_id] = waiting = []
            task = asyncio.create_task(self._serve(rotation_id))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
        waiting.append((request, future))
        return await future

    async def _serve(self, rotation_id: str) -> None:
        """Batches for ``rotation_id`` until nobody waits; then the next request starts anew."""
        waiting = self._waiting[rotation_id]
        try:
            while waiting:
                batch = waiting[:self.max_batch]
                del waiting[:self.max_batch]
                try:
                    answers: Sequence[Assignment | BaseException] = await run_in_threadpool(
                        self.assign_many, rotation_id, [request for request, _ in batch])
                except Exception as exc:  # the transaction failed: every request in it did
                    answers = [exc] * len(batch)
                for (_, future), answer in zip(batch, answers, strict=True):
                    if future.done():  # the caller went away
                        continue
                    if isinstance(answer, BaseException):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)
        finally:
            del self._waiting[rotation_id]
            for _, future in waiting:  # cancelled (shutdown): nobody is left waiting forever
                if not future.done():
                    future.cancel()
