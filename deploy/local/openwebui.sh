#!/usr/bin/env bash
# Open WebUI in front of the proxy, for the acceptance tier (make test-e2e) and for trying memproxy by hand.
#
#   deploy/local/openwebui.sh install   # venv for open-webui on the CPU torch (idempotent; minutes the first time)
#   deploy/local/openwebui.sh installed # exit 0 when that venv is complete (installs nothing)
#   deploy/local/openwebui.sh start     # install + start on 127.0.0.1, fresh DATA_DIR, wait for /health, record the PID
#   deploy/local/openwebui.sh stop      # stop the recorded PID's process group (never by name)
#   deploy/local/openwebui.sh status    # running or not
#
# start reads: MEMPROXY_OPENWEBUI_PROXY_URL (the proxy's base URL, default http://127.0.0.1:8080),
# MEMPROXY_OPENWEBUI_API_KEY (a trusted key of the proxy, so it may forward Open WebUI's user id),
# MEMPROXY_OPENWEBUI_PORT (default 3000), MEMPROXY_OPENWEBUI_DATA_DIR (default: a fresh folder per start) and
# MEMPROXY_OPENWEBUI_LOG_FILE. The venv, PID file, data and log live in the cache dir (MEMPROXY_CACHE_DIR, default
# ~/.cache/memproxy) unless told otherwise.
set -euo pipefail

CACHE_DIR="${MEMPROXY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/memproxy}"
VENV="$CACHE_DIR/openwebui-venv"
RUN_DIR="$CACHE_DIR/run"
PORT="${MEMPROXY_OPENWEBUI_PORT:-3000}"
HOST=127.0.0.1
PID_FILE="$RUN_DIR/openwebui-$PORT.pid"
LOG_FILE="${MEMPROXY_OPENWEBUI_LOG_FILE:-$RUN_DIR/openwebui-$PORT.log}"
PROXY_URL="${MEMPROXY_OPENWEBUI_PROXY_URL:-http://127.0.0.1:8080}"
API_KEY="${MEMPROXY_OPENWEBUI_API_KEY:-}"
START_TIMEOUT_S="${MEMPROXY_OPENWEBUI_START_TIMEOUT_S:-300}"
PYTHON="${PYTHON:-python3.11}"

OPENWEBUI_VERSION=0.12.4
TORCH_VERSION=2.13.0

log() { printf "[openwebui] %s\n" "$*" >&2 || true; }

stamp_file() {
    echo "$VENV/.memproxy-installed-$(echo "$OPENWEBUI_VERSION $TORCH_VERSION" | sha256sum | cut -c1-12)"
}

installed() {
    [[ -f "$(stamp_file)" ]]
}

install() {
    local stamp
    stamp="$(stamp_file)"
    if [[ -f "$stamp" ]]; then
        return 0
    fi
    log "creating $VENV (open-webui==$OPENWEBUI_VERSION on torch==$TORCH_VERSION CPU; many minutes the first time)"
    mkdir -p "$CACHE_DIR"
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
    # torch first: it takes the local CPU build; the constraint keeps open-webui's deps from pulling a CUDA one.
    "$VENV/bin/pip" install -qq "torch==$TORCH_VERSION"
    local constraints="$VENV/constraints.txt"
    echo "torch==$TORCH_VERSION" >"$constraints"
    "$VENV/bin/pip" install -qq -c "$constraints" "open-webui==$OPENWEBUI_VERSION"
    rm -f "$VENV"/.memproxy-installed-*
    touch "$stamp"
    log "venv ready"
}

running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
        return 0
    fi
    return 1
}

healthy() {
    "$VENV/bin/python" - "$HOST" "$PORT" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://{sys.argv[1]}:{sys.argv[2]}/health", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

start() {
    if pid="$(running_pid)"; then
        log "already running (pid $pid) on http://$HOST:$PORT"
        return 0
    fi
    if [[ -z "$API_KEY" ]]; then
        log "MEMPROXY_OPENWEBUI_API_KEY is not set: give it a trusted key of the proxy (README, Keys)"
        return 2
    fi
    install
    mkdir -p "$RUN_DIR" "$(dirname "$LOG_FILE")"
    local data_dir="${MEMPROXY_OPENWEBUI_DATA_DIR:-}"
    if [[ -z "$data_dir" ]]; then
        data_dir="$RUN_DIR/openwebui-$PORT-data"
        rm -rf "$data_dir"
    fi
    mkdir -p "$data_dir"
    log "starting on http://$HOST:$PORT -> $PROXY_URL/v1 (data: $data_dir, log: $LOG_FILE)"
    # Offline and self-contained: no Ollama, no model downloads (embeddings would go to the proxy's OpenAI API, only
    # used if someone uploads a document), no update check, no telemetry. Every signed-in user may use the proxy's
    # models (BYPASS_MODEL_ACCESS_CONTROL): memory is scoped per user at the proxy, not per model here.
    # setsid: the server is a session leader, so stop can end its whole process group by PID.
    (
        cd "$data_dir"
        DATA_DIR="$data_dir" \
        OPENAI_API_BASE_URL="$PROXY_URL/v1" \
        OPENAI_API_KEY="$API_KEY" \
        ENABLE_OPENAI_API=True \
        ENABLE_OLLAMA_API=False \
        ENABLE_FORWARD_USER_INFO_HEADERS=True \
        OFFLINE_MODE=True \
        HF_HUB_OFFLINE=1 \
        ENABLE_VERSION_UPDATE_CHECK=False \
        RAG_EMBEDDING_ENGINE=openai \
        RAG_OPENAI_API_BASE_URL="$PROXY_URL/v1" \
        RAG_OPENAI_API_KEY="$API_KEY" \
        BYPASS_MODEL_ACCESS_CONTROL=True \
        WEBUI_AUTH=True \
        WEBUI_SECRET_KEY="${MEMPROXY_OPENWEBUI_SECRET_KEY:-memproxy-local-open-webui-session-secret}" \
        CORS_ALLOW_ORIGIN="http://$HOST:$PORT;http://localhost:$PORT" \
        ENABLE_COMMUNITY_SHARING=False \
        SCARF_NO_ANALYTICS=true \
        DO_NOT_TRACK=true \
        ANONYMIZED_TELEMETRY=false \
        setsid "$VENV/bin/open-webui" serve --host "$HOST" --port "$PORT" </dev/null >"$LOG_FILE" 2>&1 &
        echo $! >"$PID_FILE"
    )
    local pid
    pid="$(cat "$PID_FILE")"
    local waited=0
    until healthy; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "Open WebUI exited during start-up; last lines of $LOG_FILE:"
            tail -n 40 "$LOG_FILE" >&2
            rm -f "$PID_FILE"
            return 1
        fi
        if ((waited >= START_TIMEOUT_S)); then
            log "no /health after ${START_TIMEOUT_S}s; stopping it"
            stop
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "ready after ${waited}s (pid $pid): http://$HOST:$PORT"
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    log "stopping pid $pid"
    # The server was started as a session leader: its PID is also its process group id.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "still alive after 30s; killing"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
}

status() {
    if pid="$(running_pid)"; then
        echo "running pid=$pid url=http://$HOST:$PORT"
    else
        echo "stopped"
        return 3
    fi
}

case "${1:-}" in
    install) install ;;
    installed) installed ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    *)
        sed -n '2,14p' "$0" >&2
        exit 2
        ;;
esac
