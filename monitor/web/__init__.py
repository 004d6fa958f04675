"""The dashboard (issue #8): read-only pages over the database, served beside /metrics.

``routes`` builds the Starlette app, ``queries`` holds its reads, ``marks``
and ``chart`` turn hits into marked-up text and an SVG, ``auth`` decides who
may read. Nothing here writes to the database.
"""

from monitor.web.routes import create_web_app

__all__ = ["create_web_app"]
