"""origin_retry.may_retry: which requests on a dead reused origin connection are sent again."""

from __future__ import annotations

import pytest

from caching_proxy.policy.retry import IDEMPOTENT_METHODS, MAX_RETRIES, DeadConnection, may_retry

RACE = DeadConnection(reused=True, closed_by_origin=True, response_started=False)


def allowed(method: str = "GET", *, has_body: bool = False, streamed: bool = False,
            dead: DeadConnection = RACE, retries: int = 0, timed_out: bool = False) -> bool:
    return may_retry(method, has_body=has_body, streamed=streamed, dead=dead, retries=retries,
                     timed_out=timed_out)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "get"])
def test_idempotent_methods_without_a_body_are_retried(method: str) -> None:
    assert allowed(method)


@pytest.mark.parametrize("method", ["POST", "PATCH", "CONNECT", "PURGE", "LOCK"])
def test_other_methods_never(method: str) -> None:
    assert not allowed(method)


def test_the_idempotent_methods_are_rfc_9110s() -> None:
    assert frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}) == IDEMPOTENT_METHODS


def test_never_with_a_body_nor_a_streamed_one() -> None:
    assert not allowed("PUT", has_body=True)
    assert not allowed("GET", streamed=True)


def test_never_on_a_fresh_connection_nor_one_this_proxy_closed() -> None:
    assert not allowed(dead=DeadConnection(reused=False, closed_by_origin=True,
                                           response_started=False))
    assert not allowed(dead=DeadConnection(reused=True, closed_by_origin=False,
                                           response_started=False))
    assert not allowed(timed_out=True)


def test_never_once_a_response_byte_arrived() -> None:
    assert not allowed(dead=DeadConnection(reused=True, closed_by_origin=True,
                                           response_started=True))


def test_at_most_once() -> None:
    assert MAX_RETRIES == 1
    assert allowed(retries=0)
    assert not allowed(retries=1)
    assert not allowed(retries=5)
