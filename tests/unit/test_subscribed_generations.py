"""SubscribedGenerations' bookkeeping over several nodes, on fake PubSubs (the real cluster is in
tests/e2e/test_redis_cluster.py): no copy is used while any node's subscription is down, every
counter is bumped once they are all back, the subscriptions follow the node set, and a change
heard from several nodes is counted once."""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from caching_proxy.store import generations
from caching_proxy.store.generations import SubscribedGenerations, slot_of
from caching_proxy.store.redis.keys import announced, announcement
from support import polling

URL = "http://o:80/a"


class FakeNodes:
    """Nodes that deliver what is published to every live subscription, and fail on demand."""

    def __init__(self, *nodes: str) -> None:
        self.nodes = list(nodes)
        self.down: set[str] = set()
        self.subscriptions: list[FakePubSub] = []
        self.unreadable = False

    def names(self) -> list[str]:
        if self.unreadable:
            raise ConnectionError("no node answered")
        return list(self.nodes)

    def connect(self, node: str) -> FakePubSub:
        if node in self.down:
            raise ConnectionError(node)
        pubsub = FakePubSub(self, node)
        self.subscriptions.append(pubsub)
        return pubsub

    def publish(self, url: str) -> None:
        for pubsub in self.subscriptions:
            if not pubsub.closed:
                pubsub.messages.put({"type": "message", "data": url.encode()})


class FakePubSub:
    def __init__(self, nodes: FakeNodes, node: str) -> None:
        self.nodes, self.node = nodes, node
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.closed = False

    def subscribe(self, channel: str) -> None:
        self.messages.put({"type": "subscribe", "channel": channel})

    def get_message(self, timeout: float) -> dict[str, Any] | None:
        if self.node in self.nodes.down:
            raise ConnectionError(self.node)
        try:
            return self.messages.get(timeout=min(timeout, 0.01))
        except queue.Empty:
            return None

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generations, "REFRESH", 0.1)
    monkeypatch.setattr(generations, "RETRY", 0.02)


@pytest.fixture
def fake(quick: None) -> Iterator[tuple[FakeNodes, SubscribedGenerations]]:
    nodes = FakeNodes("a:1", "b:1", "c:1")
    changes = SubscribedGenerations(nodes.names, nodes.connect, "changes")
    yield nodes, changes
    changes.close()


def up(changes: SubscribedGenerations) -> bool:
    return changes.read(URL) == changes.read(URL)


def soon(check: Callable[[], bool]) -> None:
    """Within 2 s, looked at every 5 ms (these are in-process threads)."""
    polling.wait_until(check, timeout=2, interval=0.005)


def test_up_only_while_every_node_is_subscribed(
        fake: tuple[FakeNodes, SubscribedGenerations]) -> None:
    nodes, changes = fake
    soon(lambda: changes.listening == ["a:1", "b:1", "c:1"] and up(changes))
    before = changes.read(URL)
    nodes.down.add("b:1")  # one of three
    soon(lambda: not up(changes))
    for _ in range(20):  # never a token twice while b is down, though a and c are fine
        assert changes.read(URL) != changes.read(URL)
        time.sleep(0.005)
    nodes.down.clear()
    soon(lambda: up(changes))
    assert changes.read(URL) != before  # every counter bumped: older copies are dropped


def test_a_message_from_any_node_bumps_its_url(
        fake: tuple[FakeNodes, SubscribedGenerations]) -> None:
    nodes, changes = fake
    soon(lambda: up(changes))
    mine, other = changes.read(URL), changes.read("http://o:80/b")
    nodes.publish(URL)
    soon(lambda: changes.read(URL) != mine)
    assert changes.read("http://o:80/b") == other


def test_the_subscriptions_follow_the_node_set(
        fake: tuple[FakeNodes, SubscribedGenerations]) -> None:
    nodes, changes = fake
    soon(lambda: up(changes))
    before = changes.read(URL)
    nodes.down.add("c:1")  # a failover: c dies, d is promoted
    nodes.nodes = ["a:1", "b:1", "d:1"]
    soon(lambda: changes.listening == ["a:1", "b:1", "d:1"] and up(changes))
    assert changes.read(URL) != before
    soon(lambda: all(p.closed for p in nodes.subscriptions if p.node == "c:1"))
    nodes.unreadable = True  # no node answers the topology: the subscriptions stay
    time.sleep(0.2)
    assert changes.listening == ["a:1", "b:1", "d:1"] and up(changes)


def test_one_server_has_one_subscription(quick: None) -> None:
    nodes = FakeNodes("")
    changes = SubscribedGenerations(nodes.names, nodes.connect, "changes")
    try:
        soon(lambda: changes.listening == [""] and up(changes))
        assert len(nodes.subscriptions) == 1
    finally:
        changes.close()


def counted(changes: SubscribedGenerations, url: str) -> int:
    return changes._counts[slot_of(url)]


def settled(nodes: FakeNodes) -> bool:
    return all(p.messages.empty() for p in nodes.subscriptions if not p.closed)


def test_a_change_heard_from_every_node_is_counted_once(
        fake: tuple[FakeNodes, SubscribedGenerations]) -> None:
    """A cluster forwards each PUBLISH to every node, so each subscription hears it: counted
    once by its ID; another announcement of the same URL is another change; a bare URL (no
    ID) is counted each time it is heard."""
    nodes, changes = fake
    soon(lambda: up(changes))
    for published, more in ((announcement(URL), 1), (announcement(URL), 1), (URL, 3)):
        expected = counted(changes, URL) + more
        nodes.publish(published)  # to each of the three subscriptions
        soon(lambda n=expected: settled(nodes) and counted(changes, URL) == n)
        time.sleep(0.05)  # any copy still being handled
        assert counted(changes, URL) == expected, published


def test_remembered_ids_are_bounded(fake: tuple[FakeNodes, SubscribedGenerations]) -> None:
    nodes, changes = fake
    soon(lambda: up(changes))
    for i in range(generations.HEARD_IDS + 10):
        nodes.publish(announcement(f"{URL}{i}"))
    soon(lambda: settled(nodes))
    time.sleep(0.05)
    assert len(changes._heard_ids) == generations.HEARD_IDS


def test_announcements_carry_ids_of_their_own_and_read_back() -> None:
    first, second = announcement(URL), announcement(URL)
    assert announced(first)[1] == announced(second)[1] == URL
    assert announced(first)[0] != announced(second)[0]
    spaced = "http://o:80/a b"  # the owner is everything after the ID's space
    assert announced(announcement(spaced))[1] == spaced
    assert announced(announcement("*"))[1] == "*"
    for bare in (URL, "*", spaced, "#no-space"):
        assert announced(bare) == (None, bare)


def test_a_forked_worker_announces_under_ids_of_its_own() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        os.write(write, (announced(announcement(URL))[0] or "").encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    mine = announced(announcement(URL))[0]
    assert child and mine and child[:13] != mine[:13]  # "#" and the 12-digit sender
