"""Operations written once as sequences of backend calls, run by either driver.

An operation (the layout's lookup and put, the memory tier's read, taking a lock) is a
generator that yields the backend calls it needs (store/calls.py: `Get`, `Set`, `Replace`,
`Release`, `Delete`, `Members`, ...) and receives each one's answer, or has the call's
exception raised at its `yield`. Two drivers run it:

- `run`: each call on the backend's synchronous method (diskcache, on the event loop or in a
  worker thread for a large value; a Redis store's memory-only lookup; commands and the CLI).
- `run_async`: each call awaited on the backend's asynchronous side (`Asynchronous.call_async`:
  Redis with redis-py's asyncio client, on the event loop, no thread); a backend without one
  (diskcache) has each call made synchronously, a short local step.

So both run the same steps in the same order with the same answers: what is atomic and what
is safe across processes is the backend's per-call guarantee (store/backend.py) either way,
and the layout's reasoning about interleaved calls holds for both. A run the caller abandons
(the asyncio one, cancelled by the store timeout) stops between two calls or inside one, as if
its process had died there, which the layout is written to survive (store/layout.py).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeAlias, TypeVar, cast

from caching_proxy.store.backend import Backend, asynchronous
from caching_proxy.store.calls import Call

T = TypeVar("T")

# What a step receives back is the answer of the call it yielded (typed at each `yield`).
Steps: TypeAlias = Generator[Call[Any], Any, T]


def _advance(steps: Steps[T], answer: Any, error: Exception | None) -> tuple[bool, Any]:
    """Give `steps` the last call's answer (or raise its error at the `yield`): (True, what
    they returned) once they are done, else (False, their next call)."""
    try:
        return False, (steps.send(answer) if error is None else steps.throw(error))
    except StopIteration as done:
        return True, done.value


def run(backend: Backend, steps: Steps[T]) -> T:
    """What `steps` return, each call made on `backend` synchronously."""
    answer: Any = None
    error: Exception | None = None
    while True:
        finished, value = _advance(steps, answer, error)
        if finished:
            return cast(T, value)
        try:
            answer, error = value.run(backend), None
        except Exception as e:  # raised at the step's `yield`: it may handle it (Unreadable)
            answer, error = None, e


async def run_async(backend: Backend, steps: Steps[T]) -> T:
    """`run`, each call awaited on the backend's asynchronous side (made synchronously on a
    backend without one). A cancellation (a timeout) is not given to the steps: it leaves them
    where they were, and they are dropped."""
    side = asynchronous(backend)
    answer: Any = None
    error: Exception | None = None
    while True:
        finished, value = _advance(steps, answer, error)
        if finished:
            return cast(T, value)
        try:
            answer = value.run(backend) if side is None else await side.call_async(value)
            error = None
        except Exception as e:
            answer, error = None, e


async def perform_async(backend: Backend, call: Call[T]) -> T:
    """One call, as `run_async` makes it."""
    side = asynchronous(backend)
    return call.run(backend) if side is None else await side.call_async(call)


async def close_async(backend: Backend) -> None:
    """`close`, on the event loop for a backend with an asynchronous side (its connections
    closed there first)."""
    side = asynchronous(backend)
    if side is None:
        backend.close()
    else:
        await side.close_async()
