"""Sinks: where alerts go. Each sink renders an Alert its own way and sends it.

A sink's ``send`` returns normally when the alert was taken, and raises
``DeliveryError`` (retryable or not) when it was not; the outbox worker in
``monitor.deliver`` decides what happens next.
"""

from __future__ import annotations

from typing import Protocol

from monitor.domain import Alert, Rule


class Sink(Protocol):
    name: str

    def send(self, alert: Alert, rule: Rule) -> None: ...
