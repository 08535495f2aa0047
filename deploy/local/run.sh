#!/usr/bin/env bash
# `make run`: the whole embedded stack in the foreground — vLLM CPU (SmolLM2) + the proxy on 127.0.0.1:8080.
# Ctrl-C stops both (vLLM by its recorded PID, and only if this run started it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VLLM="$ROOT/deploy/local/vllm-cpu.sh"
VLLM_PORT="${MEMPROXY_VLLM_PORT:-8000}"
export MEMPROXY_HOST="${MEMPROXY_HOST:-127.0.0.1}"
export MEMPROXY_PORT="${MEMPROXY_PORT:-8080}"
export MEMPROXY_UPSTREAM_URL="${MEMPROXY_UPSTREAM_URL:-http://127.0.0.1:$VLLM_PORT/v1}"
export MEMPROXY_DEFAULT_MODEL="${MEMPROXY_DEFAULT_MODEL:-SmolLM2-135M-Instruct}"

started_vllm=0
proxy_pid=""
cleanup() {
    # Ctrl-C also reaches `make` and anything piped after it; finish stopping even if our output is gone.
    trap '' INT TERM PIPE
    if [[ -n "$proxy_pid" ]] && kill -0 "$proxy_pid" 2>/dev/null; then
        kill -TERM "$proxy_pid" 2>/dev/null || true
        wait "$proxy_pid" 2>/dev/null || true
    fi
    if ((started_vllm)); then
        started_vllm=0
        "$VLLM" stop
    fi
}
trap cleanup EXIT INT TERM

if ! "$VLLM" status >/dev/null; then
    started_vllm=1
    "$VLLM" start
fi

base="http://$MEMPROXY_HOST:$MEMPROXY_PORT/v1"
key_hint='"anything"'
[[ -n "${MEMPROXY_API_KEYS:-}" ]] && key_hint='"<one of MEMPROXY_API_KEYS>"'
cat <<MSG

memproxy is starting on $base (upstream: $MEMPROXY_UPSTREAM_URL, model: $MEMPROXY_DEFAULT_MODEL)

  Python (pip install openai):
    from openai import OpenAI
    client = OpenAI(base_url="$base", api_key=$key_hint)
    reply = client.chat.completions.create(
        model="$MEMPROXY_DEFAULT_MODEL",
        messages=[{"role": "user", "content": "Hello! Who are you?"}],
    )
    print(reply.choices[0].message.content)

  curl:
    curl $base/chat/completions -H 'Content-Type: application/json' \\
      -d '{"model": "$MEMPROXY_DEFAULT_MODEL", "messages": [{"role": "user", "content": "Hello!"}]}'

Press Ctrl-C to stop the proxy and vLLM.

MSG

"$ROOT/.venv/bin/memproxy" serve &
proxy_pid=$!
wait "$proxy_pid"
