"""Health and metrics: /healthz (JSON, 503 when the database does not answer) and /metrics.

Numbers that live in the database (touches, backlog, handoffs) are read on each scrape, so
every daemon sharing a database reports the same totals; watcher state is this process's.
Each web app has its own registry: several apps in one process (tests) never collide.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.app import App
from engine.domain.schedule import assume_utc
from engine.web.state import Runtime, WatcherLike, nurture, runtime

log = structlog.get_logger("nurture.web")
router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Health: database, workers, watchers")
async def healthz(request: Request) -> JSONResponse:
    """200 while the database answers (with workers and watchers), else 503."""
    body = await asyncio.to_thread(health, nurture(request), runtime(request))
    return JSONResponse(body, status_code=200 if body["database"]["ok"] else 503,
                        headers={"Cache-Control": "no-store"})


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics
    data = await asyncio.to_thread(generate_latest, registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)


def health(app: App, rt: Runtime) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {"status": "ok", "database": {"ok": True}}
    try:
        app.store.stats.ping()
        body["workers"] = _workers(app, now)
    except Exception as exc:  # noqa: BLE001 - health reports any database failure
        log.warning("health_database_failed", error=str(exc))
        body["status"] = "down"
        body["database"] = {"ok": False, "error": type(exc).__name__}
    body["watchers"] = {name: _watcher(w, now) for name, w in rt.watchers().items()}
    if body["status"] == "ok" and not all(w["connected"] and not w["retrying_since"]
                                          for w in body["watchers"].values()):
        # Sending works; replies are seen once it reconnects or the database takes them.
        body["status"] = "degraded"
    body["uptime_seconds"] = round((now - rt.started_at).total_seconds(), 1)
    return body


def _watcher(w: WatcherLike, now: datetime) -> dict[str, Any]:
    return {"connected": w.connected, "last_event_age_seconds": _age(w.last_event_at, now),
            "handle_failures": w.handle_failures,
            "retrying_since": (assume_utc(w.retrying_since).isoformat()
                               if w.retrying_since else None),
            "retrying_seconds": _age(w.retrying_since, now)}


def _workers(app: App, now: datetime) -> dict[str, Any]:
    alive = [w.name for w in app.store.workers.workers()
             if now - assume_utc(w.heartbeat_at) <= app.stale_after]
    return {"alive": len(alive), "names": alive}


def _age(at: datetime | None, now: datetime) -> float | None:
    return round((now - assume_utc(at)).total_seconds(), 1) if at else None


class NurtureCollector(Collector):
    """Reads the database and the watchers on every scrape."""

    def __init__(self, app: App, rt: Runtime) -> None:
        self.app, self.rt = app, rt

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(UTC)
        up = GaugeMetricFamily("nurture_database_up", "1 when the database answers")
        try:
            families = list(self._database(now))
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail with the database
            log.warning("metrics_database_failed", error=str(exc))
            families = []
        up.add_metric([], 1.0 if families else 0.0)
        yield up
        yield from families
        yield from self._watchers(now)

    def _database(self, now: datetime) -> Iterator[Metric]:
        store = self.app.store
        counts = store.stats.touch_counts()
        mailboxes = sorted(set(self.app.settings.mailboxes) | {m for m, _ in counts})
        for state, help_text in (("sent", "Email touches accepted by the SMTP server"),
                                 ("failed", "Email touches that failed for good")):
            family = CounterMetricFamily(f"nurture_touches_{state}", help_text,
                                         labels=["mailbox"])
            for mailbox in mailboxes:
                family.add_metric([mailbox], float(counts.get((mailbox, state), 0)))
            yield family
        status = store.reports.status(now)
        yield GaugeMetricFamily("nurture_due_backlog", "Enrollments due now and not yet sent",
                                value=float(status.due_now))
        oldest = ((now - assume_utc(status.oldest_due_at)).total_seconds()
                  if status.oldest_due_at else 0)
        yield GaugeMetricFamily("nurture_oldest_due_age_seconds",
                                "How long the oldest due touch has waited", value=max(oldest, 0))
        handoffs = GaugeMetricFamily("nurture_handoffs_open",
                                     "Handoffs not closed yet, by state", labels=["state"])
        for state, n in sorted(store.stats.handoffs().items()):
            handoffs.add_metric([state], float(n))
        yield handoffs
        yield GaugeMetricFamily("nurture_workers_alive", "Daemons with a recent heartbeat",
                                value=float(_workers(self.app, now)["alive"]))

    def _watchers(self, now: datetime) -> Iterator[Metric]:
        watchers = self.rt.watchers()
        connected = GaugeMetricFamily("nurture_watcher_connected",
                                      "1 while the mailbox watcher is connected",
                                      labels=["mailbox"])
        age = GaugeMetricFamily("nurture_watcher_last_event_age_seconds",
                                "Seconds since the IMAP server last answered the watcher "
                                "(IDLE event, poll)", labels=["mailbox"])
        failures = CounterMetricFamily(
            "nurture_watcher_handle_failures", "Inbound messages skipped because handling "
            "them failed for good (see the imap_handle_failed log)", labels=["mailbox"])
        retries = CounterMetricFamily(
            "nurture_watcher_handle_retries", "Times an inbound message waited to be handled "
            "again because the database did not take it", labels=["mailbox"])
        retrying = GaugeMetricFamily(
            "nurture_watcher_retrying_seconds", "How long a message has waited to be handled "
            "again (0 when none waits): replies are not seen meanwhile", labels=["mailbox"])
        for name in sorted(watchers):
            w = watchers[name]
            connected.add_metric([name], 1.0 if w.connected else 0.0)
            last = _age(w.last_event_at, now)
            age.add_metric([name], math.nan if last is None else last)
            failures.add_metric([name], float(w.handle_failures))
            retries.add_metric([name], float(w.handle_retries))
            retrying.add_metric([name], _age(w.retrying_since, now) or 0.0)
        yield from (connected, age, failures, retries, retrying)


def registry(app: App, rt: Runtime) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(NurtureCollector(app, rt))
    return reg
