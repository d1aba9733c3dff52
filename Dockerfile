# Vigil's image: the API, the three workers, the console and toyprod all run from it (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN groupadd --system vigil && useradd --system --gid vigil --home-dir /app --shell /usr/sbin/nologin vigil

WORKDIR /app
COPY pyproject.toml README.md ./
COPY vigil ./vigil
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY api ./api
COPY ui ./ui
COPY benchmarks ./benchmarks
COPY toyprod ./toyprod
COPY infra ./infra
RUN pip install . && mkdir -p /app/state && chown vigil:vigil /app/state

USER vigil
ENV VIGIL_STATE_DIR=/app/state
EXPOSE 8000 8080 8090 9101 9102 9103
CMD ["vigil", "api"]
