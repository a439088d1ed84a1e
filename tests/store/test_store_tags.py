"""Tags and soft purges in the store, on both backends (a diskcache folder, a real redis-server):
a tag purge reads only its own group, takes every tagged variant and nothing else, its index
shrinks as responses are purged or expire, a stale marker never purges the response that
replaced the one it marked; a soft purge keeps body, validators and expiry and makes the
response stale."""

from __future__ import annotations

import dataclasses
import pickle
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from caching_proxy.policy import evaluate
from caching_proxy.policy.directives import NO_DIRECTIVES
from caching_proxy.store import Store
from caching_proxy.store.backend import SEP, Backend
from caching_proxy.store.entry import Entry
from caching_proxy.store.layout import tag_group
from support.entries import expires_at, make_entry

URL = "http://o:80/product/42"


class Spy:
    """A backend that passes every call through and notes which calls were made."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.listed: list[str] = []
        self.reads: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return getattr(self.inner, name)


def spy_on(backend: Backend) -> Spy:
    spy = Spy(backend)

    def members(group: str) -> list[str]:
        spy.listed.append(group)
        return backend.members(group)

    def get_many(keys: Iterable[str]) -> Iterator[object | None]:
        keys = list(keys)
        spy.reads.extend(keys)
        return backend.get_many(keys)

    spy.__dict__.update(members=members, get_many=get_many)
    return spy


def tagged(url: str, *tags: str, vary: str | None = None, value: str = "",
           body: bytes = b"x") -> Entry:
    return dataclasses.replace(make_entry(url, body=body, vary=vary, value=value), tags=tags)


def stale_now(entry: Entry | None) -> bool:
    assert entry is not None
    return evaluate(NO_DIRECTIVES, entry.meta, time.time()).ttl <= 0


def test_a_tag_purge_takes_every_tagged_variant_and_nothing_else(store: Store) -> None:
    store.put(tagged(URL, "p42", "products", vary="Accept", value="json"), 60)
    store.put(tagged(URL, "p42", "products", vary="Accept", value="html"), 60)
    store.put(tagged("http://o:80/list", "products"), 60)
    store.put(tagged("http://o:80/p43", "p43"), 60)
    store.put(make_entry("http://o:80/untagged"), 60)
    assert store.purge_tag("p42") == 2
    assert store.lookup(URL, [("Accept", "json")]) is None
    assert store.lookup(URL, [("Accept", "html")]) is None
    assert store.lookup("http://o:80/list", []) is not None
    assert store.lookup("http://o:80/p43", []) is not None
    assert store.lookup("http://o:80/untagged", []) is not None
    assert store.tagged_keys("p42") == []  # the purge took its markers too
    assert store.purge_tag("products") == 1
    assert store.lookup("http://o:80/list", []) is None
    assert store.purge_tag("nothing-has-it") == 0


def test_a_marker_left_by_a_url_purge_never_takes_the_response_stored_after(
        store: Store) -> None:
    store.put(tagged("http://o:80/a", "old"), 60)
    store.delete_url("http://o:80/a")
    store.put(make_entry("http://o:80/a", body=b"new, untagged"), 60)
    assert store.purge_tag("old") == 0
    found = store.lookup("http://o:80/a", [])
    assert found is not None and found.body == b"new, untagged"


def test_markers_expire_with_their_response(store: Store) -> None:
    store.put(tagged("http://o:80/short", "t"), 1)
    store.put(tagged("http://o:80/long", "t"), 60)
    key = tag_group("t") + SEP + "http://o:80/long"
    assert abs(expires_at(store, key) - expires_at(store, "http://o:80/long")) < 1
    time.sleep(1.2)
    assert store.tagged_keys("t") == ["http://o:80/long"]


def test_a_tag_purge_reads_only_the_tags_group(store: Store) -> None:
    for i in range(50):
        store.put(tagged(f"http://o:80/other/{i}", "other"), 60)
    store.put(tagged("http://o:80/mine", "mine"), 60)
    spy = spy_on(store.backend)
    assert Store(spy).purge_tag("mine") == 1  # type: ignore[arg-type]
    # One listing of its own group, one read of the one response it names, no scan.
    assert "scan" not in spy.calls
    assert spy.listed == [tag_group("mine")]
    assert spy.reads == ["http://o:80/mine"]
    assert store.lookup("http://o:80/other/7", []) is not None


def test_a_soft_purge_keeps_body_validators_and_expiry_and_makes_it_stale(
        store: Store) -> None:
    entry = tagged(URL, "p42", body=b"stored body")
    entry = dataclasses.replace(entry, headers=(*entry.headers, (b"ETag", b'"v1"')))
    store.put(entry, 600)
    before = expires_at(store, URL)
    assert not stale_now(store.lookup(URL, []))
    assert store.purge_tag("p42", soft=True) == 1
    softened = store.lookup(URL, [])
    assert softened is not None and stale_now(softened)
    assert softened.body == b"stored body" and (b"ETag", b'"v1"') in softened.headers
    assert softened.tags == ("p42",)
    assert abs(expires_at(store, URL) - before) < 2
    # Still tagged: a second soft purge finds it, a hard one removes it.
    assert store.purge_tag("p42", soft=True) == 1
    assert store.purge_tag("p42") == 1
    assert store.lookup(URL, []) is None


def test_soft_purge_by_url_and_soft_clear_take_every_variant(store: Store) -> None:
    store.put(make_entry(URL, vary="Accept", value="a"), 60)
    store.put(make_entry(URL, vary="Accept", value="b"), 60)
    store.put(make_entry("http://o:80/other"), 60)
    assert store.delete_url(URL, soft=True) == 2
    assert stale_now(store.lookup(URL, [("Accept", "a")]))
    assert stale_now(store.lookup(URL, [("Accept", "b")]))
    assert not stale_now(store.lookup("http://o:80/other", []))
    assert store.soft_clear() == 3
    assert stale_now(store.lookup("http://o:80/other", []))
    assert store.usage_estimate().entries == 3


def test_an_entry_pickled_before_tags_existed_loads_without_them() -> None:
    entry = make_entry("http://o:80/old")
    state = entry.__getstate__()[:-1]  # as the previous version pickled it: no tags field
    revived = Entry.__new__(Entry)
    revived.__setstate__(state)
    assert revived.tags == () and revived.body == entry.body
    assert pickle.loads(pickle.dumps(revived)).tags == ()


def test_tags_that_cannot_be_one_are_refused(store: Store) -> None:
    for bad in ("", "a b", "a,b", "a\x00b"):
        with pytest.raises(ValueError):
            store.purge_tag(bad)
