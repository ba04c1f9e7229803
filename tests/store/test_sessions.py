"""Closed console sessions, on every store backend."""

from __future__ import annotations

import time


async def test_a_closed_session_is_remembered_and_expired_ones_are_forgotten(store):
    now = int(time.time())
    assert not await store.session_revoked("abc")
    await store.revoke_session("old", now - 10)  # already past its cookie's expiry
    await store.revoke_session("abc", now + 3600)
    assert await store.session_revoked("abc")
    assert not await store.session_revoked("abd")  # only that session
    # The next sign-out sweeps the revocations whose cookies have expired meanwhile.
    await store.revoke_session("def", now + 3600)
    assert not await store.session_revoked("old")
    assert await store.session_revoked("abc") and await store.session_revoked("def")
    await store.revoke_session("abc", now + 7200)  # twice: no error
    assert await store.session_revoked("abc")


async def test_a_nonce_cannot_reach_beyond_its_row(store):
    """The nonce is bound as a parameter: quotes and wildcards are plain characters."""
    await store.revoke_session("x' OR '1'='1", int(time.time()) + 60)
    assert not await store.session_revoked("y")
    assert not await store.session_revoked("%")
    assert await store.session_revoked("x' OR '1'='1")
