"""The origin budget's queue (origin/budget.py) and pause (origin/backoff.py) on a real event
loop, without a store: slots are handed on in arrival order, a wait past the queue is refused
and leaves nothing held, a cancelled waiter gives back what it was handed, background work
never jumps the queue, and after a pause one probe goes first."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from caching_proxy.origin.backoff import Backoff
from caching_proxy.origin.budget import Budget, Limits


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def test_slots_go_to_waiters_in_arrival_order() -> None:
    async def main() -> list[int]:
        budget = Budget(Limits(concurrency=1, queue_timeout=5))
        order: list[int] = []

        async def ask(number: int) -> None:
            assert await budget.admit(None) is not None
            order.append(number)
            await asyncio.sleep(0.01)
            budget.release()

        await asyncio.gather(*(ask(i) for i in range(6)))
        assert budget.in_flight == 0 and budget.queued == 0
        return order

    assert run(main()) == [0, 1, 2, 3, 4, 5]


def test_a_wait_past_the_queue_timeout_is_refused_and_holds_nothing() -> None:
    async def main() -> None:
        budget = Budget(Limits(concurrency=1, queue_timeout=0.05))
        assert await budget.admit(None) is not None
        assert await budget.admit(None) is None  # the one slot stays taken past the timeout
        assert budget.refused == 1 and budget.queued == 0
        budget.release()
        assert budget.in_flight == 0
        assert await budget.admit(None) is not None

    run(main())


def test_a_cancelled_waiter_leaves_the_queue_and_the_slot_goes_on() -> None:
    async def main() -> None:
        budget = Budget(Limits(concurrency=1, queue_timeout=5))
        assert await budget.admit(None) is not None
        gone = asyncio.ensure_future(budget.admit(None))
        kept = asyncio.ensure_future(budget.admit(None))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.sleep(0.01)
        budget.release()
        assert await asyncio.wait_for(kept, 1) == ""
        assert budget.in_flight == 1 and budget.queued == 0

    run(main())


def test_the_rate_spaces_admissions() -> None:
    async def main() -> list[float]:
        budget = Budget(Limits(rate=20, queue_timeout=5))
        loop = asyncio.get_running_loop()
        times: list[float] = []

        async def ask() -> None:
            assert await budget.admit(None) is not None
            times.append(loop.time())
            budget.release()

        await asyncio.gather(*(ask() for _ in range(5)))
        return times

    times = run(main())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.045 for gap in gaps), gaps


def test_the_rate_refuses_what_would_wait_too_long() -> None:
    async def main() -> list[bool]:
        budget = Budget(Limits(rate=2, queue_timeout=0.6))
        tickets = await asyncio.gather(*(budget.admit(None) for _ in range(4)))
        return [ticket is not None for ticket in tickets]

    # Places at 0, 0.5 s; the third (1 s) is past the 0.6 s queue.
    assert run(main()) == [True, True, False, False]


def test_background_work_never_jumps_the_queue() -> None:
    async def main() -> None:
        budget = Budget(Limits(concurrency=1, queue_timeout=5))
        assert await budget.admit_background(None) is not None
        assert await budget.admit_background(None) is None  # no slot free
        waiting = asyncio.ensure_future(budget.admit(None))
        await asyncio.sleep(0.01)
        budget.release()  # the slot goes to the client waiting, not to more background work
        assert await asyncio.wait_for(waiting, 1) is not None
        assert await budget.admit_background(None) is None
        budget.release()
        assert await budget.admit_background(None) is not None

    run(main())


def test_low_priority_goes_after_every_client() -> None:
    async def main() -> list[str]:
        budget = Budget(Limits(concurrency=1, queue_timeout=5))
        order: list[str] = []
        assert await budget.admit(None) is not None  # the one slot taken

        async def ask(name: str, low: bool) -> None:
            ticket = await (budget.admit_low(None) if low else budget.admit(None))
            assert ticket is not None
            order.append(name)
            await asyncio.sleep(0.01)
            budget.release(ticket)

        waiting = [asyncio.ensure_future(ask("warm", True))]
        await asyncio.sleep(0.01)
        waiting += [asyncio.ensure_future(ask(f"client{i}", False)) for i in range(3)]
        await asyncio.sleep(0.01)
        budget.release()
        await asyncio.gather(*waiting)
        return order

    # The warm request asked first, and went last.
    assert run(main()) == ["client0", "client1", "client2", "warm"]


def test_after_a_pause_one_probe_goes_and_its_answer_decides() -> None:
    async def main() -> None:
        backoff = Backoff()
        assert backoff.may_probe("a") and backoff.may_probe("b")  # never paused: all go
        assert await backoff.observe(429, "0", None) == 0
        # The pause (0 s here) is over; one request probes, the others wait for its answer.
        assert backoff.may_probe("a")
        assert not backoff.may_probe("b")
        backoff.probe_failed("a")  # no answer: the next request probes
        assert backoff.may_probe("b") and not backoff.may_probe("a")
        assert await backoff.observe(200, None, None) is None
        assert backoff.may_probe("a") and backoff.may_probe("c")

    run(main())


@pytest.mark.parametrize(("answers", "pauses"), [
    ([429, 429, 429], [1, 2, 4]),
    ([429, 200, 429], [1, None, 1]),  # an ordinary answer starts the doubling over
])
def test_backoff_without_retry_after_doubles(answers: list[int],
                                             pauses: list[int | None]) -> None:
    async def main() -> list[float | None]:
        backoff = Backoff()
        return [await backoff.observe(status, None, None) for status in answers]

    assert run(main()) == pauses
