"""What the Redis backend sends, as values either redis-py client can send: its synchronous
client (`send`) or its asyncio one (`send_async`, awaited on the event loop).

Each backend call that has an asynchronous side is written once, as a generator that yields
these requests and receives each one's answer (store/redis/store.py's `_ops`); the backend runs
it with the client of the caller's kind. So the synchronous and the asynchronous call send the
same commands and scripts, in the same order, with the same atomicity.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar, cast

from caching_proxy.store.redis.scripts import LuaScript

T = TypeVar("T")


@dataclass(slots=True)
class Command:
    """One redis-py client method, by name (`get`, `set`, `pttl`...): the same call on the
    synchronous client and on the asyncio one, whose method returns an awaitable."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def send(self, client: Any) -> Any:
        return getattr(client, self.name)(*self.args, **self.kwargs)

    async def send_async(self, client: Any) -> Any:
        return await getattr(client, self.name)(*self.args, **self.kwargs)


@dataclass(slots=True)
class Script:
    """One Lua script (store/redis/scripts.py): atomic on the server."""

    script: LuaScript
    keys: list[str]
    args: list[Any] = field(default_factory=list)

    def send(self, client: Any) -> Any:
        return self.script(client, self.keys, self.args)

    async def send_async(self, client: Any) -> Any:
        return await self.script.call_async(client, self.keys, self.args)


@dataclass(slots=True)
class Pipeline:
    """Commands sent in one non-transactional pipeline (split by node on a cluster, where a
    MULTI cannot span slots): their answers, in order. Only for commands that may run twice: a
    cluster pipeline sends each command that failed (MOVED, a timeout) again on its own, so a
    node that stalls mid-batch costs a socket timeout per command of it."""

    commands: list[tuple[Any, ...]]

    def send(self, client: Any) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for command in self.commands:
            pipe.execute_command(*command)
        return cast(list[Any], pipe.execute())

    async def send_async(self, client: Any) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for command in self.commands:
            pipe.execute_command(*command)
        return cast(list[Any], await pipe.execute())


Request: TypeAlias = Command | Script | Pipeline
# A call's requests: each `yield` receives the answer to the request it yielded.
Ops: TypeAlias = Generator[Request, Any, T]
