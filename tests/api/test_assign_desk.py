"""The API's assignment desk (`syncd.api.assign_desk`): requests that wait together for a
rotation go in one batch, in arrival order, and each caller gets its own answer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from syncd.api.assign_desk import AssignDesk
from syncd.core import rotation as rot
from syncd.core.errors import TransientError
from syncd.service.rotations import Assignment, AssignmentRequest, NobodyEligible, assignment_request

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Rotations:
    """A stand-in for `RotationEngine.assign_many`: each key gets the next member in turn;
    keys starting with "refuse" are refused; the first batch waits until it is let go."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[str]]] = []
        self.go = threading.Event()
        self.fail: BaseException | None = None

    def assign_many(self, rotation_id: str, requests: Sequence[AssignmentRequest]
                    ) -> list[Assignment | NobodyEligible]:
        self.go.wait(10)
        self.batches.append((rotation_id, [r.idempotency_key for r in requests]))
        if self.fail is not None:
            raise self.fail
        return [NobodyEligible("nobody", rot.Choice(None, (), (), None)) if r.idempotency_key.startswith("refuse")
                else Assignment(f"id-{r.idempotency_key}", rotation_id, f"m{i}", None, None, NOW, False)
                for i, r in enumerate(requests)]


async def requests(desk: AssignDesk, rotation_id: str, keys: Sequence[str]) -> list[Assignment | BaseException]:
    tasks = []
    for key in keys:
        tasks.append(asyncio.create_task(desk.assign(rotation_id, assignment_request(key))))
        await asyncio.sleep(0)  # each arrives on its own
    return list(await asyncio.gather(*tasks, return_exceptions=True))


def test_requests_waiting_together_go_in_one_batch_in_arrival_order() -> None:
    rotations = Rotations()
    desk = AssignDesk(rotations.assign_many)

    async def scenario() -> list[Assignment | BaseException]:
        first = asyncio.create_task(requests(desk, "r", ["k0"]))
        await asyncio.sleep(0.05)  # k0's batch is under way (held by `go`); the rest wait for it
        rest = asyncio.create_task(requests(desk, "r", ["k1", "refuse-2", "k3"]))
        await asyncio.sleep(0.05)
        rotations.go.set()
        return [*await first, *await rest]

    answers = asyncio.run(scenario())
    assert rotations.batches == [("r", ["k0"]), ("r", ["k1", "refuse-2", "k3"])]
    k0, k1, refused, k3 = answers
    assert isinstance(k0, Assignment) and k0.id == "id-k0"
    assert isinstance(k1, Assignment) and isinstance(k3, Assignment) and (k1.id, k3.id) == ("id-k1", "id-k3")
    assert isinstance(refused, NobodyEligible)  # a refusal reaches its own caller only


def test_rotations_are_batched_apart_and_a_batch_is_bounded() -> None:
    rotations = Rotations()
    rotations.go.set()
    desk = AssignDesk(rotations.assign_many, max_batch=2)

    async def scenario() -> None:
        await asyncio.gather(requests(desk, "r", [f"r{i}" for i in range(5)]),
                             requests(desk, "s", ["s0"]))

    asyncio.run(scenario())
    by_rotation: dict[str, list[list[str]]] = {}
    for rotation_id, keys in rotations.batches:
        by_rotation.setdefault(rotation_id, []).append(keys)
    assert by_rotation["s"] == [["s0"]]
    assert [k for batch in by_rotation["r"] for k in batch] == [f"r{i}" for i in range(5)]
    assert max(len(batch) for batch in by_rotation["r"]) == 2


def test_a_failed_transaction_fails_every_request_in_it_and_the_desk_goes_on() -> None:
    rotations = Rotations()
    rotations.go.set()
    rotations.fail = TransientError("assignment: database busy")
    desk = AssignDesk(rotations.assign_many)

    async def scenario() -> tuple[list[Assignment | BaseException], list[Assignment | BaseException]]:
        failed = await requests(desk, "r", ["k0", "k1"])
        rotations.fail = None
        return failed, await requests(desk, "r", ["k2"])

    failed, after = asyncio.run(scenario())
    assert all(isinstance(answer, TransientError) for answer in failed)
    assert isinstance(after[0], Assignment) and after[0].id == "id-k2"


def test_a_caller_that_goes_away_does_not_stop_the_others() -> None:
    rotations = Rotations()
    desk = AssignDesk(rotations.assign_many)

    async def scenario() -> Assignment:
        leaving = asyncio.create_task(desk.assign("r", assignment_request("k0")))
        staying = asyncio.create_task(desk.assign("r", assignment_request("k1")))
        await asyncio.sleep(0.05)
        leaving.cancel()
        rotations.go.set()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        return await staying

    assert asyncio.run(scenario()).id == "id-k1"
