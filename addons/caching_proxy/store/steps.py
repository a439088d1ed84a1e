"""The layout's operations (store/layout.py) as sequences of backend calls, run by either driver.

A layout operation (a lookup, a put) is written once, as a generator that yields the backend
calls it needs (`Get`, `Set`, `Replace`, `Release`, `Delete`, `Members`) and receives each
one's answer, or has the call's exception raised at its `yield`. Two drivers run it:

- `run`: each call on the backend's synchronous method (diskcache, on the event loop or in a
  worker thread for a large value; a Redis store's memory-only lookup; commands and the CLI).
- `run_async`: each call awaited on the backend's asynchronous twin (Redis with redis-py's
  asyncio client, on the event loop, no thread).

So both run the same steps in the same order with the same answers: what is atomic and what
is safe across processes is the backend's per-call guarantee (store/backend.py) either way,
and the layout's reasoning about interleaved calls holds for both. A run the caller abandons
(the asyncio one, cancelled by the store timeout) stops between two calls or inside one, as if
its process had died there, which the layout is written to survive (store/layout.py).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar, cast

from caching_proxy.store.backend import Backend

T = TypeVar("T")


@dataclass(slots=True)
class Get:
    """`Backend.get`: the value under `key` (or None)."""

    key: str
    max_inline: int | None = None

    def run(self, backend: Backend) -> object | None:
        return backend.get(self.key, self.max_inline)

    async def run_async(self, backend: Backend) -> object | None:
        return await backend.get_async(self.key, self.max_inline)


@dataclass(slots=True)
class Set:
    """`Backend.set`: whether the value was stored."""

    key: str
    value: object
    expire: float
    group: str | None = None
    keep_later: bool = False

    def run(self, backend: Backend) -> bool:
        return backend.set(self.key, self.value, self.expire, self.group, self.keep_later)

    async def run_async(self, backend: Backend) -> bool:
        return await backend.set_async(self.key, self.value, self.expire, self.group,
                                       self.keep_later)


@dataclass(slots=True)
class Replace:
    """`Backend.replace`: whether the value was stored (its group emptied, `lock` released)."""

    key: str
    value: object
    expire: float
    lock: tuple[str, str] | None = None

    def run(self, backend: Backend) -> bool:
        return backend.replace(self.key, self.value, self.expire, self.lock)

    async def run_async(self, backend: Backend) -> bool:
        return await backend.replace_async(self.key, self.value, self.expire, self.lock)


@dataclass(slots=True)
class Release:
    """`Backend.delete_if`: whether lock `name` still carried `token` and was removed."""

    name: str
    token: str

    def run(self, backend: Backend) -> bool:
        return backend.delete_if(self.name, self.token)

    async def run_async(self, backend: Backend) -> bool:
        return await backend.delete_if_async(self.name, self.token)


@dataclass(slots=True)
class Delete:
    """`Backend.delete`: how many of `keys` were live."""

    keys: list[str]

    def run(self, backend: Backend) -> int:
        return backend.delete(self.keys)

    async def run_async(self, backend: Backend) -> int:
        return await backend.delete_async(self.keys)


@dataclass(slots=True)
class Members:
    """`Backend.members`: the keys of the group's live members."""

    group: str

    def run(self, backend: Backend) -> list[str]:
        return backend.members(self.group)

    async def run_async(self, backend: Backend) -> list[str]:
        return await backend.members_async(self.group)


Call: TypeAlias = Get | Set | Replace | Release | Delete | Members
# What a step receives back is the answer of the call it yielded (typed at each `yield`).
Steps: TypeAlias = Generator[Call, Any, T]


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
    """`run`, each call awaited on the backend's asynchronous twin. A cancellation (a timeout)
    is not given to the steps: it leaves them where they were, and they are dropped."""
    answer: Any = None
    error: Exception | None = None
    while True:
        finished, value = _advance(steps, answer, error)
        if finished:
            return cast(T, value)
        try:
            answer, error = await value.run_async(backend), None
        except Exception as e:
            answer, error = None, e
