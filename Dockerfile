# monitor as a container: one replica. Several replicas share one PostgreSQL
# (DATABASE_URL=postgresql+psycopg://...); see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
COPY monitor ./monitor
RUN pip install . && useradd --system --uid 10001 monitor

COPY config ./config
COPY seeds ./seeds
USER monitor

# Config, watchlists and seeds can be replaced by mounting over /app/config and /app/seeds.
ENV MONITOR_CONFIG=/app/config/monitor.yaml
CMD ["monitor", "run"]
