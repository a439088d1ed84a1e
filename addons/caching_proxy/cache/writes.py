"""Writing a fill's answer to the store: how long to keep it, and the write itself, which
releases the fill's store lock with it and refuses what the store could not keep."""

from __future__ import annotations

from caching_proxy.cache import capacity
from caching_proxy.cache.coalescing import held_lock, lock_released
from caching_proxy.cache.flow_state import FlowState
from caching_proxy.store.entry import Entry
from caching_proxy.store.guarded import GuardedStore


def expire_of(entry: Entry, keep_stale: float) -> float | None:
    """Seconds to keep `entry`, or None if nothing could ever reuse it."""
    meta = entry.meta
    fresh_for = max(0.0, meta.ttl(meta.response_time))
    # Kept past freshness to be revalidated, or served stale where a request (max-stale) or the
    # origin (stale-while-revalidate, stale-if-error) allows it.
    grace = max(meta.stale_while_revalidate, meta.stale_if_error, keep_stale)
    return fresh_for + grace if fresh_for + grace > 0 else None


def put(store: GuardedStore, state: FlowState, entry: Entry, expire: float) -> bool:
    """Whether `entry` was stored, on the loop; the store lock of the flow's fill is released
    with it (in the same call for a response without Vary: Store.put)."""
    if not capacity.fits(store, entry):
        return _too_large(state)
    lock = held_lock(state)
    stored = store.put(entry, expire, lock)
    if stored and lock is not None:
        lock_released(state)
    return stored


async def put_off_loop(store: GuardedStore | None, state: FlowState, entry: Entry,
                       expire: float) -> bool:
    """`put` with the store's put_off_loop (a network store, or a large value)."""
    if store is None:
        return False
    if not capacity.fits(store, entry):
        return _too_large(state)
    lock = held_lock(state)
    stored = await store.put_off_loop(entry, expire, lock)
    if stored and lock is not None:
        lock_released(state)
    return stored


def _too_large(state: FlowState) -> bool:
    state.detail = state.detail or capacity.DETAIL
    return False
