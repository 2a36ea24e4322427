"""Negotiation with peer platforms (issue 18, 可对话): before a job is committed to a peer's pool
the peer is asked for its own answer — when the job would start and finish there, and what it
would bill us (`POST /api/v1/jobs/estimate` on the peer, pinned to that pool). Network placement
uses the answer (`scheduling.Quote`) as the wait on that pool, and the explanation shows it
beside our own pools.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from ..domain.errors import ConnectorError
from ..domain.model import JobRequirements
from ..scheduling import PoolState, Quote, QuoteKey, shape_key, static_reasons
from ..store import models as m
from .context import Platform

log = logging.getLogger(__name__)


def job_body(req: JobRequirements) -> dict[str, Any]:
    """The API fields a peer needs to answer for a job shape (what decides where and when)."""
    res = req.resources
    body: dict[str, Any] = {
        "resources": {"device": res.device.value, "units": res.units, "nodes": res.nodes,
                      "model": res.model, "memory_gb": res.memory_gb},
        "walltime_s": req.walltime_s, "precision": req.precision.value,
    }
    c = req.constraints
    if c.arch or c.features:
        body["constraints"] = {k: v for k, v in (("arch", c.arch),
                                                 ("features", list(c.features))) if v}
    if req.environment:
        body["environment"] = req.environment
    return body


def wanted(reqs: Iterable[JobRequirements], pools: list[PoolState]) -> dict[QuoteKey, tuple[
        JobRequirements, PoolState]]:
    """The (job shape, peer pool) pairs a pass would weigh: each distinct shape, on each peer
    pool that could run it at all."""
    peers = [st for st in pools if st.peer and not st.withdrawn]
    out: dict[QuoteKey, tuple[JobRequirements, PoolState]] = {}
    if not peers:
        return out
    for req in reqs:
        key = shape_key(req)
        for st in peers:
            if (key, st.pool_id) not in out and not static_reasons(req, st):
                out[(key, st.pool_id)] = (req, st)
    return out


def ask(p: Platform, req: JobRequirements, pool: PoolState) -> Quote:
    """One peer's answer for one job shape on one of its pools. ConnectorError when the peer
    cannot be asked now."""
    with p.db.session() as s:
        center = s.scalar(select(m.Center).where(m.Center.id == pool.center_id))
    if center is None:
        return Quote(None, reason="the peer is gone")
    conn: Any = p.connector_for(center)
    answer = conn.quote(pool.pool_name, job_body(req))
    wait = answer.get("wait_s")
    if wait is None:
        return Quote(None, reason=str(answer.get("reason") or ""))
    finish = answer.get("finish_s")
    cost = answer.get("cost_fen")
    return Quote(float(wait), float(finish) if finish is not None else None,
                 int(cost) if cost is not None else None)


def ask_all(p: Platform, req: JobRequirements, pools: list[PoolState]) -> dict[QuoteKey, Quote]:
    """Every peer pool's answer for one job, now (an estimate): a peer that cannot be asked
    answers that it cannot run it."""
    out: dict[QuoteKey, Quote] = {}
    for key, (r, st) in wanted([req], pools).items():
        try:
            out[key] = ask(p, r, st)
        except ConnectorError as exc:
            out[key] = Quote(None, reason=f"the peer did not answer: {exc.message}"[:300])
    return out
