"""SubscribedGenerations' bookkeeping over several nodes, on fake PubSubs (the real cluster is in
tests/test_redis_cluster.py): no copy is used while any node's subscription is down, every
counter is bumped once they are all back, and the subscriptions follow the node set."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from caching_proxy.store import generations
from caching_proxy.store.generations import SubscribedGenerations

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


def wait_until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 2
    while not check():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.005)


def test_up_only_while_every_node_is_subscribed(
        fake: tuple[FakeNodes, SubscribedGenerations]) -> None:
    nodes, changes = fake
    wait_until(lambda: changes.listening == ["a:1", "b:1", "c:1"] and up(changes))
    before = changes.read(URL)
    nodes.down.add("b:1")  # one of three
    wait_until(lambda: not up(changes))
    for _ in range(20):  # never a token twice while b is down, though a and c are fine
        assert changes.read(URL) != changes.read(URL)
        time.sleep(0.005)
    nodes.down.clear()
    wait_until(lambda: up(changes))
    assert changes.read(URL) != before  # every counter bumped: older copies are dropped


def test_a_message_from_any_node_bumps_its_url(
        fake: tuple[FakeNodes, SubscribedGenerations]) -> None:
    nodes, changes = fake
    wait_until(lambda: up(changes))
    mine, other = changes.read(URL), changes.read("http://o:80/b")
    nodes.publish(URL)
    wait_until(lambda: changes.read(URL) != mine)
    assert changes.read("http://o:80/b") == other


def test_the_subscriptions_follow_the_node_set(
        fake: tuple[FakeNodes, SubscribedGenerations]) -> None:
    nodes, changes = fake
    wait_until(lambda: up(changes))
    before = changes.read(URL)
    nodes.down.add("c:1")  # a failover: c dies, d is promoted
    nodes.nodes = ["a:1", "b:1", "d:1"]
    wait_until(lambda: changes.listening == ["a:1", "b:1", "d:1"] and up(changes))
    assert changes.read(URL) != before
    wait_until(lambda: all(p.closed for p in nodes.subscriptions if p.node == "c:1"))
    nodes.unreadable = True  # no node answers the topology: the subscriptions stay
    time.sleep(0.2)
    assert changes.listening == ["a:1", "b:1", "d:1"] and up(changes)


def test_one_server_has_one_subscription(quick: None) -> None:
    nodes = FakeNodes("")
    changes = SubscribedGenerations(nodes.names, nodes.connect, "changes")
    try:
        wait_until(lambda: changes.listening == [""] and up(changes))
        assert len(nodes.subscriptions) == 1
    finally:
        changes.close()
