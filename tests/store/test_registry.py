"""The store registry (store/registry.py): every location resolved by its scheme in one place, a
plain path or `file:` URL a diskcache folder, what a backend declares (Traits) checked on open
and read by the hooks' guard instead of the location."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from caching_proxy.store import DiskStore, Store, Traits, open_store, register, shown, unregister
from caching_proxy.store.disk.store import DiskBackend
from caching_proxy.store.guarded import GuardedStore
from caching_proxy.store.redis.urls import SCHEMES as REDIS_SCHEMES
from caching_proxy.store.registry import FILE, registration_for


def test_a_plain_path_and_a_file_url_are_diskcache_folders(tmp_path: Path) -> None:
    for location, folder in [(str(tmp_path / "plain"), tmp_path / "plain"),
                             (f"file://{tmp_path}/url", tmp_path / "url"),
                             (f"file:{tmp_path}/short", tmp_path / "short"),
                             (f"file://localhost{tmp_path}/local%20host", tmp_path / "local host")]:
        store = open_store(location)
        try:
            assert isinstance(store, DiskStore) and store.location == str(folder)
            assert (folder / "cache.db").exists()
        finally:
            store.close()
    with pytest.raises(ValueError, match="not a local folder"):
        open_store("file://elsewhere/x")


def test_every_redis_form_is_registered_and_anything_else_is_a_folder() -> None:
    for form in REDIS_SCHEMES:
        assert registration_for(form + "h:1").scheme == form.split(":")[0]
    assert registration_for("/var/cache/proxy").scheme == FILE
    assert registration_for("relative/folder:with-colon").scheme == FILE
    assert registration_for("C:folder").scheme == FILE  # no registered scheme, no //
    with pytest.raises(ValueError, match="no store is registered for memcached:"):
        registration_for("memcached://h:11211")


def test_a_location_is_shown_without_its_passwords() -> None:
    assert shown("redis://user:secret@h:6379/0") == "redis://user:***@h:6379/0"
    assert shown("nosuch://:secret@h") == "nosuch://:***@h"
    assert shown("/a/folder") == "/a/folder"


class Claims(DiskBackend):
    """A diskcache backend that declares itself remote, without an asynchronous side."""

    traits = Traits(remote=True, shared=True, async_capable=False)


@pytest.fixture
def claims_scheme(tmp_path: Path) -> Iterator[str]:
    register("claims", lambda location, options: Store(Claims(str(tmp_path))))
    yield "claims:x"
    unregister("claims")


def test_traits_a_backend_cannot_keep_are_refused_on_open(claims_scheme: str) -> None:
    with pytest.raises(TypeError, match="remote, so must be async_capable"):
        open_store(claims_scheme)
    unregister("claims")
    with pytest.raises(ValueError, match="no store is registered for claims:"):
        open_store("claims://x")


def test_the_guard_takes_remote_and_shared_from_the_backends_traits(tmp_path: Path) -> None:
    local, network = open_store(str(tmp_path)), open_store("redis+cluster://127.0.0.1:9")
    try:  # (a Redis client connects on its first call: none is made here)
        assert local.traits == Traits(remote=False, shared=False, async_capable=False)
        assert network.traits == Traits(remote=True, shared=True, async_capable=True)
        for store in (local, network):
            guarded = GuardedStore(store)
            assert (guarded.remote, guarded.shared) == (store.traits.remote, store.traits.shared)
        assert GuardedStore(local, shared=True).shared  # --workers share a local store
    finally:
        local.close()
        network.close()
