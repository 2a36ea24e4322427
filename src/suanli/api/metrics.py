"""Prometheus metrics: request latency, and the platform's state read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from ..domain.jobstate import JobState
from ..services.centers import used_units_by_pool
from ..services.context import Platform
from ..services.control import EngineControl, EngineStatus
from ..services.leader import current_leader, leader_changes
from ..services.replicas import ROLES, seen
from ..store import models as m
from ..store.db import unavailable


class PlatformCollector(Collector):
    def __init__(self, platform: Platform, engine: EngineControl) -> None:
        self.p = platform
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        jobs = GaugeMetricFamily("suanli_jobs", "Jobs by state", labels=["state"])
        units = GaugeMetricFamily("suanli_pool_units_in_use", "Units in use per pool",
                                  labels=["center", "pool"])
        total = GaugeMetricFamily("suanli_pool_units_total", "Units per pool",
                                  labels=["center", "pool"])
        util = GaugeMetricFamily("suanli_pool_utilization", "Units in use / units, per pool",
                                 labels=["center", "pool"])
        cutil = GaugeMetricFamily("suanli_center_utilization", "Units in use / units, per center",
                                  labels=["center"])
        queue = GaugeMetricFamily("suanli_queue_length",
                                  "Queued jobs waiting for a pool (the pool ranked best for them)",
                                  labels=["center", "pool"])
        up = GaugeMetricFamily("suanli_database_up",
                               "1 while this process reaches the database, else 0")
        status = self.engine.status()
        try:
            with self.p.db.session() as s:
                counts = dict(s.execute(select(m.Job.state, func.count())
                                        .group_by(m.Job.state)).all())
                used = used_units_by_pool(s)
                pools = s.execute(select(m.Pool, m.Center.slug).join(m.Center)).all()
            leader = current_leader(self.p)
            epoch = leader["epoch"] if leader else leader_changes(self.p)
            procs = seen(self.p)
        except DBAPIError as exc:
            if not unavailable(exc):
                raise
            # What this process knows without the database; the platform's figures come back
            # with it.
            up.add_metric([], 0.0)
            yield from (up, *self._engine_families(status))
            return
        up.add_metric([], 1.0)
        for state in JobState:
            jobs.add_metric([state.value], counts.get(state.value, 0))
        per_center: dict[str, list[int]] = {}
        waiting = status.last.waiting_by_pool
        for pool, slug in pools:
            n = pool.total_units
            u = used.get(pool.id, 0)
            units.add_metric([slug, pool.name], u)
            total.add_metric([slug, pool.name], n)
            util.add_metric([slug, pool.name], u / n if n else 0.0)
            queue.add_metric([slug, pool.name], waiting.get(pool.id, 0))
            acc = per_center.setdefault(slug, [0, 0])
            acc[0] += u
            acc[1] += n
        for slug, (u, n) in per_center.items():
            cutil.add_metric([slug], u / n if n else 0.0)
        changes = CounterMetricFamily("suanli_leader_changes",
                                      "Times the engine lease was taken (its epoch)")
        changes.add_metric([], epoch)
        age = GaugeMetricFamily("suanli_lease_age_seconds",
                                "Seconds since the engine leader last renewed its lease "
                                "(absent while nobody holds it)")
        if leader and leader["lease_age_s"] is not None:
            age.add_metric([], leader["lease_age_s"])
        replicas = GaugeMetricFamily("suanli_replicas",
                                     "Control-plane processes seen within SUANLI_REPLICA_SEEN_S",
                                     labels=["role"])
        for role in ROLES:
            replicas.add_metric([role], sum(1 for r in procs if r["role"] == role))
        pass_s = GaugeMetricFamily("suanli_engine_pass_seconds",
                                   "How long the engine leader's last pass took (absent until "
                                   "it reported one)")
        last_pass = GaugeMetricFamily(
            "suanli_engine_last_pass_timestamp_seconds",
            "When the engine leader's last pass began (Unix time, as its heartbeat reported it: "
            "up to SUANLI_HEARTBEAT_S late; absent until it reported one)")
        lead = next((r for r in procs if leader and r["id"] == leader["holder"]), None)
        if lead is not None and lead["last_pass_ms"] is not None:
            pass_s.add_metric([], lead["last_pass_ms"] / 1000)
        if lead is not None and lead["last_pass_at"] is not None:
            last_pass.add_metric([], lead["last_pass_at"].timestamp())
        yield from (up, jobs, units, total, util, cutil, queue, *self._engine_families(status),
                    changes, age, replicas, pass_s, last_pass)

    @staticmethod
    def _engine_families(status: EngineStatus) -> list[GaugeMetricFamily | CounterMetricFamily]:
        placements = CounterMetricFamily("suanli_placements", "Placements made by this server")
        placements.add_metric([], status.placements_total)
        running = GaugeMetricFamily("suanli_engine_running", "1 while the engine runs, else 0")
        running.add_metric([], 1.0 if status.running else 0.0)
        restarts = CounterMetricFamily("suanli_engine_restarts",
                                       "Times the server restarted its engine process after it died")
        restarts.add_metric([], status.restarts)
        return [placements, running, restarts]


class Metrics:
    def __init__(self, platform: Platform, engine: EngineControl) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "suanli_api_request_seconds", "API latency", ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.errors = Counter("suanli_api_errors", "API responses with status >= 500",
                              ["route"], registry=self.registry)
        self.registry.register(PlatformCollector(platform, engine))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.latency.labels(method, route, str(status)).observe(seconds)
        if status >= 500:
            self.errors.labels(route).inc()
