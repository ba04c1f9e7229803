# copines: the chat service, ready for Postgres (Supabase or the compose `db`) and Redis.
# Build: docker build -t copines .   Run: see compose.yaml and deploy/setup.md.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# Wheels for copines and every dependency (psycopg's binary build included: no libpq needed).
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    COPINES_DATA_DIR=/data
RUN useradd --create-home --uid 10001 copines \
    && mkdir -p /data /knowledge \
    && chown copines /data /knowledge
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels
# The sample knowledge, so `copines ingest /knowledge` works out of the box; mount your own over it.
COPY --chown=copines examples/knowledge /knowledge
USER copines
WORKDIR /home/copines
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
# Listen on every interface inside the container; the reverse proxy is the only way in.
CMD ["sh", "-c", "exec copines serve --host 0.0.0.0 --port 8000 --workers ${COPINES_WORKERS:-2}"]
