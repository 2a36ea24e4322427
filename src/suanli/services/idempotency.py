"""Idempotent submissions: a client that sends `Idempotency-Key: K` with a job gets, for every
retry of that same request with K, the job (or array) the first one queued — never a second job.
What a retry needs when an answer is lost: a 503 while the database restarted, a connection that
broke during the commit, a timeout.

The key is the tenant's (two users of one tenant with one key mean one submission; another
tenant's K is another key) and is recorded in the transaction that queues the job, so a job and
its key commit together or not at all. Two requests with one key at the same moment: the unique
constraint lets one commit, and the other answers what it committed. K with a different request
is refused (409): a key names one submission."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..domain.errors import Conflict, InvalidInput
from ..store import models as m
from .auth import Principal
from .context import Platform

T = TypeVar("T")
MAX_KEY = 200


@dataclass(frozen=True)
class SubmissionKey:
    """A key as a request brought it, with the SHA-256 of what the request asked for."""

    value: str
    request_sha256: str

    @staticmethod
    def of(value: str, request: bytes) -> SubmissionKey:
        if not 1 <= len(value) <= MAX_KEY or not all("!" <= c <= "~" for c in value):
            raise InvalidInput(f"an Idempotency-Key is 1-{MAX_KEY} printable ASCII characters "
                               "(a UUID, say)", field="Idempotency-Key")
        return SubmissionKey(value, hashlib.sha256(request).hexdigest())


@dataclass(frozen=True)
class Earlier:
    """What the first submission with the key queued: a job, or an array."""

    job_id: int | None
    array_id: int | None


def record(s: Session, tenant_id: int, key: SubmissionKey | None, now: datetime, *,
           job_id: int | None = None, array_id: int | None = None) -> None:
    """In the transaction that queues the job: the key, and what it queued."""
    if key is not None:
        s.add(m.SubmissionKey(tenant_id=tenant_id, key=key.value,
                              request_sha256=key.request_sha256, job_id=job_id,
                              array_id=array_id, created_at=now))


def _earlier(p: Platform, tenant_id: int, key: SubmissionKey) -> Earlier | None:
    with p.db.session() as s:
        row = s.scalar(select(m.SubmissionKey).where(m.SubmissionKey.tenant_id == tenant_id,
                                                     m.SubmissionKey.key == key.value))
        if row is None:
            return None
        if row.request_sha256 != key.request_sha256:
            raise Conflict(f"Idempotency-Key {key.value} was used for another submission; a "
                           "key names one submission (use a new one for a new job)",
                           field="Idempotency-Key")
        return Earlier(row.job_id, row.array_id)


def submit_once(p: Platform, actor: Principal, key: SubmissionKey | None,
                submit: Callable[[], T], replay: Callable[[Earlier], T]) -> tuple[T, bool]:
    """`submit()` (which records `key` with what it queues), unless the tenant's key already
    queued something: then `replay` of that. Returns the answer and whether it was a replay."""
    if key is None or actor.tenant_id is None:
        return submit(), False
    found = _earlier(p, actor.tenant_id, key)
    if found is not None:
        return replay(found), True
    try:
        return submit(), False
    except IntegrityError:
        found = _earlier(p, actor.tenant_id, key)  # another request with the key committed first
        if found is None:
            raise
        return replay(found), True
