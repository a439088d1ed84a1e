"""Entries pickled before the subpackages (their class named `caching_proxy.entry.Entry`) still
load, from a diskcache folder and through the Redis codec's restricted unpickler."""

from __future__ import annotations

import pickle

from caching_proxy.store.entry import Entry
from caching_proxy.store.redis import codec
from support.entries import make_entry

NEW = b"caching_proxy.store.entry"
OLD = b"caching_proxy.entry"


def old_pickle(entry: Entry) -> bytes:
    # Protocol 3 names a class as `module\nname\n` and has no frame lengths to fix up; the
    # lookup by module name is the same in every protocol.
    data = pickle.dumps(entry, protocol=3)
    assert NEW + b"\n" in data
    return data.replace(NEW + b"\n", OLD + b"\n")


def test_an_old_pickle_loads_as_todays_entry() -> None:
    entry = make_entry("http://o:80/old")
    loaded = pickle.loads(old_pickle(entry))
    assert type(loaded) is Entry and loaded == entry


def test_the_redis_codec_reads_an_old_entry() -> None:
    entry = make_entry("http://o:80/old")
    assert codec.decode(codec.ENTRY_MARK + old_pickle(entry)) == entry
