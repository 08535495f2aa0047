# syntax=docker/dockerfile:1
# memproxy's image: the proxy and its memory engine (CPU only: embeddings, FAISS, LoRA training run on CPU; the model
# itself is served by vLLM on a GPU elsewhere). Build from the repository root:
#     docker build -t memproxy:latest .
# No secret is baked in: keys, passwords and the cache-salt secret come from the environment / mounted files at run time.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: a virtual environment in /opt/memproxy ----------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/memproxy/bin:$PATH
RUN python -m venv /opt/memproxy
# torch first, pinned, from PyTorch's CPU index: a plain `torch` requirement from PyPI would pull the CUDA build and
# its multi-GB nvidia-* wheels, which the proxy never uses. (The build host needs that index; on the project's own
# machines, which reach PyPI only, `make install` takes the same pin from the local CPU build instead.)
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY deploy/constraints.txt deploy/constraints.txt
COPY proxy proxy
COPY memory memory
COPY adapters adapters
# The constraints pin torch to the build installed above, so nothing replaces it.
RUN pip install -c deploy/constraints.txt . \
    && python -c "import proxy, memory, adapters, torch; print('memproxy image: torch', torch.__version__)"

# --- runtime: the venv only, run by an unprivileged user ----------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/memproxy/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/memproxy \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    MEMPROXY_HOST=0.0.0.0 \
    MEMPROXY_PORT=8080 \
    MEMPROXY_DATA_DIR=/data
RUN groupadd --system --gid 10001 memproxy \
    && useradd --system --uid 10001 --gid memproxy --home-dir /home/memproxy --create-home --shell /usr/sbin/nologin memproxy \
    && mkdir -p /data \
    && chown memproxy:memproxy /data
COPY --from=build /opt/memproxy /opt/memproxy
USER 10001:10001
WORKDIR /home/memproxy
# The graph store (embedded SQLite), the FAISS index, the durable write queue, the ONNX export of the embedder and the
# generated cache-salt secret. With MEMPROXY_GRAPH_BACKEND=neo4j only derived data lives here (rebuilt from Neo4j).
VOLUME ["/data"]
EXPOSE 8080
# slim has no curl: ask /healthz with the interpreter that is there anyway.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MEMPROXY_PORT', '8080'), timeout=3)"]
ENTRYPOINT ["memproxy"]
CMD ["serve", "--host", "0.0.0.0"]
