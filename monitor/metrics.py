"""Prometheus metrics: every counter and gauge the daemon exports on /metrics.

Bottom layer: definitions only, so any step can count what it does. Figures
that live in the database (outbox depth, deliveries by status) are read at
scrape time by ``monitor.http``, so every replica reports the same truth.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

REGISTRY = CollectorRegistry(auto_describe=True)

polls = Counter(
    "monitor_polls_total", "Polls of a source, by outcome (ok, error, not_modified).",
    ["source", "outcome"], registry=REGISTRY,
)  # fmt: skip
articles = Counter(
    "monitor_articles_total", "New articles stored, by source.", ["source"], registry=REGISTRY
)
hits = Counter("monitor_hits_total", "Hits stored, by rule.", ["rule"], registry=REGISTRY)
delivery_attempts = Counter(
    "monitor_delivery_attempts_total", "Send attempts, by sink and result.",
    ["sink", "result"], registry=REGISTRY,
)  # fmt: skip
lease_takeovers = Counter(
    "monitor_lease_takeovers_total", "Expired leases of another replica taken over.",
    ["kind"], registry=REGISTRY,
)  # fmt: skip
fencing_rejections = Counter(
    "monitor_fencing_rejections_total", "Results discarded because the lease was lost.",
    ["kind"], registry=REGISTRY,
)  # fmt: skip
config_reload_successful = Gauge(
    "monitor_config_last_reload_successful", "1 if the last config (re)load was valid.",
    registry=REGISTRY,
)  # fmt: skip
config_reload_timestamp = Gauge(
    "monitor_config_last_reload_success_timestamp_seconds", "When a config was last applied.",
    registry=REGISTRY,
)  # fmt: skip
config_info = Gauge(
    "monitor_config_info", "The running config's hash (value 1).", ["hash"], registry=REGISTRY
)
last_tick = Gauge(
    "monitor_last_tick_timestamp_seconds", "When each tick last completed.", ["tick"],
    registry=REGISTRY,
)  # fmt: skip
database_errors = Counter(
    "monitor_database_errors_total",
    "Database errors that may pass by themselves, by reason (locked, disk_full, io_error,"
    " unavailable).", ["reason"], registry=REGISTRY,
)  # fmt: skip
storage_degraded = Gauge(
    "monitor_storage_degraded",
    "1 from a transient database failure until the next successful commit.", registry=REGISTRY,
)  # fmt: skip
