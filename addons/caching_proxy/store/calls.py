"""The backend calls the layout, the memory tier, the locks and the use counts make, as values.

Each names one synchronous method of the Backend interfaces (store/backend.py) with its
arguments: `run(backend)` makes it there, and a backend with an asynchronous side takes the same
value on the event loop (`Asynchronous.call_async`). So an operation written once as the calls
it yields (store/steps.py) runs either way, with the same arguments, in the same order, and the
guarantees are those of the method it names either way.

`writes` are the keys whose stored values a call changes (the memory tier forgets its copies of
them before passing the call on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from caching_proxy.store.backend import Backend, ReadsWithExpiry

T = TypeVar("T")


class Call(Generic[T]):
    """A backend call answering a T."""

    __slots__ = ()

    @property
    def writes(self) -> tuple[str, ...]:
        return ()

    def run(self, backend: Backend) -> T:
        """Make the call on the backend's synchronous method."""
        raise NotImplementedError


@dataclass(slots=True)
class Get(Call[object | None]):
    """`Values.get`: the value under `key` (or None)."""

    key: str
    max_inline: int | None = None

    def run(self, backend: Backend) -> object | None:
        return backend.get(self.key, self.max_inline)


@dataclass(slots=True)
class GetWithExpiry(Call[tuple[object | None, float | None]]):
    """`ReadsWithExpiry.get_with_expiry`: the value and the seconds it has left. Made only on
    a backend that has it (the memory tier checks once; an isinstance check of a protocol per
    call would cost more than a disk read)."""

    key: str
    max_inline: int | None = None

    def run(self, backend: Backend) -> tuple[object | None, float | None]:
        return cast(ReadsWithExpiry, backend).get_with_expiry(self.key, self.max_inline)


@dataclass(slots=True)
class Expiry(Call[float | None]):
    """`Values.expiry`: the seconds the value under `key` has left (None: absent)."""

    key: str

    def run(self, backend: Backend) -> float | None:
        return backend.expiry(self.key)


@dataclass(slots=True)
class Set(Call[bool]):
    """`Values.set`: whether the value was stored."""

    key: str
    value: object
    expire: float
    group: str | None = None
    keep_later: bool = False

    @property
    def writes(self) -> tuple[str, ...]:
        return (self.key,)

    def run(self, backend: Backend) -> bool:
        return backend.set(self.key, self.value, self.expire, self.group, self.keep_later)


@dataclass(slots=True)
class Replace(Call[bool]):
    """`Values.replace`: whether the value was stored (its group emptied, `lock` released)."""

    key: str
    value: object
    expire: float
    lock: tuple[str, str] | None = None

    @property
    def writes(self) -> tuple[str, ...]:
        # Its group's members need no forgetting: none is reached but through `key`'s record.
        return (self.key,)

    def run(self, backend: Backend) -> bool:
        return backend.replace(self.key, self.value, self.expire, self.lock)


@dataclass(slots=True)
class Delete(Call[int]):
    """`Values.delete`: how many of `keys` were live."""

    keys: list[str]

    @property
    def writes(self) -> tuple[str, ...]:
        return tuple(self.keys)

    def run(self, backend: Backend) -> int:
        return backend.delete(self.keys)


@dataclass(slots=True)
class Members(Call[list[str]]):
    """`Values.members`: the keys of the group's live members."""

    group: str

    def run(self, backend: Backend) -> list[str]:
        return backend.members(self.group)


@dataclass(slots=True)
class Add(Call[bool]):
    """`Locks.add`: whether lock `name` was taken with `token` for `ttl` seconds."""

    name: str
    token: str
    ttl: float

    def run(self, backend: Backend) -> bool:
        return backend.add(self.name, self.token, self.ttl)


@dataclass(slots=True)
class Release(Call[bool]):
    """`Locks.delete_if`: whether lock `name` still carried `token` and was removed."""

    name: str
    token: str

    def run(self, backend: Backend) -> bool:
        return backend.delete_if(self.name, self.token)


@dataclass(slots=True)
class CountUse(Call[int]):
    """`UseCounts.count_use`: the new count of `key`."""

    key: str
    window: float

    def run(self, backend: Backend) -> int:
        return backend.count_use(self.key, self.window)


@dataclass(slots=True)
class Reserve(Call[float | None]):
    """`Schedules.reserve`: seconds to wait, or None (refused)."""

    key: str
    rate: float
    burst: int
    max_wait: float

    def run(self, backend: Backend) -> float | None:
        return backend.reserve(self.key, self.rate, self.burst, self.max_wait)


@dataclass(slots=True)
class HoldOff(Call[float]):
    """`Schedules.hold_off`: the seconds the pause in place has left."""

    key: str
    seconds: float

    def run(self, backend: Backend) -> float:
        return backend.hold_off(self.key, self.seconds)


@dataclass(slots=True)
class HeldOff(Call[float]):
    """`Schedules.held_off`: the seconds the pause has left (0: none)."""

    key: str

    def run(self, backend: Backend) -> float:
        return backend.held_off(self.key)


@dataclass(slots=True)
class TakeSlot(Call[bool]):
    """`Schedules.take_slot`: whether a slot was taken."""

    key: str
    token: str
    limit: int
    lease: float

    def run(self, backend: Backend) -> bool:
        return backend.take_slot(self.key, self.token, self.limit, self.lease)


@dataclass(slots=True)
class GiveSlot(Call[None]):
    """`Schedules.give_slot`."""

    key: str
    token: str

    def run(self, backend: Backend) -> None:
        backend.give_slot(self.key, self.token)
