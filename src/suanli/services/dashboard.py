"""The city compute dashboard (城市算力大屏): the whole network's figures for the bureau, from the
running platform's data — capacity, utilization over time and its peak, centers and their load,
jobs per day, enterprises served, the domestic-chip share, the voucher pool's burn-down.

Utilization: each run's standard P·h spread evenly over the hours it ran, so an hour's figure is
the average P in use during that hour (the peak is the highest such hour)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ..domain.enums import Precision, Role
from ..domain.errors import Forbidden
from ..store import models as m
from .auth import Principal
from .centers import city_capacity, used_units_by_pool
from .context import Platform
from .voucher_reports import burn_down


def _epoch(s: Session, column: Any) -> Any:
    """A timestamp column as seconds since 1970 (UTC), computed by the database."""
    if s.get_bind().dialect.name == "sqlite":
        return (func.julianday(column) - 2440587.5) * 86400.0
    return func.extract("epoch", column)


def _spread(rows: Iterable[tuple[float, float, float]], start: float, end: float) -> dict[int, float]:
    """P·h of each run (epoch seconds begun, ended) spread over the hours of [start, end) it
    overlaps: the average P in use in each hour, keyed by hour number since 1970."""
    out: dict[int, float] = defaultdict(float)
    for begun, ended, pfh in rows:
        if ended <= begun or not pfh:
            continue
        rate = pfh / (ended - begun)
        t, stop = max(begun, start), min(ended, end)
        while t < stop:
            hour = int(t // 3600)
            nxt = min((hour + 1) * 3600.0, stop)
            out[hour] += rate * (nxt - t)
            t = nxt
    return out


def city_dashboard(p: Platform, actor: Principal, *, days: int = 30) -> dict[str, Any]:
    actor.require(Role.PLATFORM_ADMIN)
    now = p.clock.now()
    since = now - timedelta(days=days)
    capacity = city_capacity(p, actor)
    with p.db.session() as s:
        u = m.UsageRecord
        lo, hi = since.timestamp(), now.timestamp()
        spans = s.execute(select(_epoch(s, u.started_at), _epoch(s, u.ended_at), u.pflops_hours,
                                 u.unit_seconds, u.pool_id)
                          .where(u.ended_at > since, u.started_at < now)).all()
        hourly = _spread(((float(a), float(b), float(c or 0.0)) for a, b, c, _us, _p in spans), lo, hi)
        # units in use per hour (unit-hours spread the same way), for the share of the city's units
        units_busy = _spread(((float(a), float(b), us / 3600.0) for a, b, _c, us, _p in spans), lo, hi)
        # runs still going count up to now (their P·h is not metered yet): P of their units
        running = s.execute(select(m.Run.started_at, m.Run.units, m.Run.pool_id, m.Job.precision)
                            .join(m.Job, m.Job.id == m.Run.job_id)
                            .where(m.Run.state == "running", m.Run.started_at.is_not(None))).all()
        pools = {pl.id: pl for pl in s.scalars(select(m.Pool))}
        live_pfh, live_units = [], []
        for st, n, pid, prec in running:
            if st is None or pid not in pools:
                continue
            begun = max(st.timestamp(), lo)
            hours = (hi - begun) / 3600.0
            live_pfh.append((begun, hi, pools[pid].spec().peak_pflops(Precision(prec), n) * hours))
            live_units.append((begun, hi, n * hours))
        for into, live in ((hourly, live_pfh), (units_busy, live_units)):
            for hour, v in _spread(live, lo, hi).items():
                into[hour] += v
        city_units = sum(pl.total_units for pl in pools.values())
        day = func.date(m.Job.submitted_at)
        jobs_per_day = [(str(d), int(n)) for d, n in s.execute(
            select(day, func.count()).where(m.Job.submitted_at >= since).group_by(day).order_by(day))]
        served_all = s.scalar(select(func.count(func.distinct(u.tenant_id)))) or 0
        served_window = s.scalar(select(func.count(func.distinct(m.Job.tenant_id)))
                                 .where(m.Job.submitted_at >= since)) or 0
        # the window's metered P·h, and the part on domestic chips (from the rows read above)
        domestic_ids = {pl.id for pl in pools.values() if pl.domestic}
        pfh_total = sum(float(c or 0.0) for _a, _b, c, _us, _p in spans)
        pfh_domestic = sum(float(c or 0.0) for _a, _b, c, _us, pid in spans if pid in domestic_ids)
        used = used_units_by_pool(s)
        centers = []
        for c in s.scalars(select(m.Center).order_by(m.Center.id)):
            total = sum(pl.total_units for pl in pools.values() if pl.center_id == c.id)
            busy = sum(used.get(pl.id, 0) for pl in pools.values() if pl.center_id == c.id)
            centers.append({"id": c.id, "slug": c.slug, "name_zh": c.name_zh, "name_en": c.name_en,
                            "kind": c.kind, "district": c.district, "status": c.status,
                            "units": total, "busy_units": busy,
                            "load": round(busy / total, 3) if total else 0.0})
        prog = s.scalars(select(m.VoucherProgramme).where(
            or_(m.VoucherProgramme.year == now.year, m.VoucherProgramme.status == "open"))
            .order_by(m.VoucherProgramme.year.desc(), m.VoucherProgramme.id)).first()
        vouchers = None
        if prog is not None:
            vouchers = {"programme_id": prog.id, "name": prog.name, "budget_fen": prog.budget_fen,
                        "burn_down": burn_down(s, prog.id, prog.year, prog.budget_fen)}
        jobs_total = s.scalar(select(func.count(m.Job.id))) or 0
    series = [(datetime.fromtimestamp(h * 3600, UTC), v) for h, v in sorted(hourly.items())]
    peak = max(series, key=lambda kv: kv[1], default=(None, 0.0))
    return {
        "at": now.isoformat(), "days": days, "capacity": capacity,
        # each hour: the average P in use, and the share of the city's units in use (%)
        "utilization": [{"hour": h.isoformat(), "pflops": _sig(v),
                         "percent": round(100.0 * units_busy.get(int(h.timestamp()) // 3600, 0.0)
                                          / city_units, 3) if city_units else 0.0}
                        for h, v in series],
        "peak": {"hour": peak[0].isoformat() if peak[0] else None, "pflops": _sig(peak[1])},
        "jobs_per_day": [{"day": d, "jobs": n} for d, n in jobs_per_day],
        "jobs_total": int(jobs_total),
        "enterprises_served": {"all_time": int(served_all), "window": int(served_window)},
        "domestic_share": round(float(pfh_domestic) / float(pfh_total), 4) if pfh_total else 0.0,
        "pflops_hours": _sig(float(pfh_total)),
        "centers": centers,
        "vouchers": vouchers,
    }



def _sig(v: float) -> float:
    """Six significant digits (a small CPU pool's hourly P is a few millionths)."""
    return float(f"{v:.6g}")


def center_load(p: Platform, actor: Principal, center_id: int, *, days: int = 7) -> dict[str, Any]:
    """One center's load, hour by hour over the last `days` (its operator, the platform): the P in
    use, and per pool the average units in use and their share of the pool's units. Runs count
    once they have ended and been metered (what is running now is in the pools' "in use")."""
    if not (actor.role.is_platform or (actor.role is Role.CENTER_OPERATOR and actor.center_id == center_id)):
        raise Forbidden("a center's load is for its operator and the platform")
    now = p.clock.now()
    lo, hi = (now - timedelta(days=days)).timestamp(), now.timestamp()
    first, last = int(lo // 3600), int(hi // 3600)
    u = m.UsageRecord
    with p.db.session() as s:
        pools = [(pl.id, pl.name, pl.total_units) for pl in s.scalars(
            select(m.Pool).where(m.Pool.center_id == center_id).order_by(m.Pool.id))]
        spans = s.execute(select(u.pool_id, _epoch(s, u.started_at), _epoch(s, u.ended_at),
                                 u.pflops_hours, u.unit_seconds)
                          .where(u.center_id == center_id, u.ended_at > now - timedelta(days=days),
                                 u.started_at < now)).all()
    pflops = _spread(((float(a), float(b), float(c or 0.0)) for _p, a, b, c, _us in spans), lo, hi)
    hours = range(first, last + 1)
    out_pools = []
    for pool_id, name, units in pools:
        busy = _spread(((float(a), float(b), us / 3600.0) for pid, a, b, _c, us in spans
                        if pid == pool_id), lo, hi)
        out_pools.append({"id": pool_id, "name": name, "units": units,
                          "busy": [round(busy.get(h, 0.0), 3) for h in hours],
                          "percent": [round(100.0 * busy.get(h, 0.0) / units, 2) if units else 0.0
                                      for h in hours]})
    return {"hours": [datetime.fromtimestamp(h * 3600, UTC).isoformat() for h in hours],
            "pflops": [_sig(pflops.get(h, 0.0)) for h in hours], "pools": out_pools}
