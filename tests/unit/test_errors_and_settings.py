from __future__ import annotations

import hashlib

import pytest

from proxy.errors import (
    AuthenticationError,
    InternalError,
    InvalidRequestError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnreachable,
    error_body,
)
from proxy.settings import Settings


def test_error_body_is_openai_shaped() -> None:
    assert error_body("m", "invalid_request_error", param="p", code="c") == {
        "error": {"message": "m", "type": "invalid_request_error", "param": "p", "code": "c"}
    }


@pytest.mark.parametrize(
    ("error", "status", "error_type"),
    [
        (InvalidRequestError("x"), 400, "invalid_request_error"),
        (AuthenticationError("x"), 401, "invalid_request_error"),
        (UpstreamUnreachable("x"), 502, "upstream_error"),
        (UpstreamTimeout("x"), 504, "upstream_error"),
        (InternalError("x"), 500, "server_error"),
    ],
)
def test_each_error_has_its_status_and_type(error, status, error_type) -> None:
    assert error.status_code == status
    assert error.to_body()["error"]["type"] == error_type


def test_long_upstream_messages_are_trimmed() -> None:
    error = UpstreamStatusError.from_response(400, b'{"message": "' + b"x" * 5000 + b'"}')
    assert len(error.message) <= 1000


def test_upstream_error_without_a_body_says_the_status() -> None:
    error = UpstreamStatusError.from_response(429, b"")
    assert error.status_code == 429
    assert "429" in error.message


def test_settings_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("MEMPROXY_UPSTREAM_URL", "http://vllm:8000/v1/")
    monkeypatch.setenv("MEMPROXY_API_KEYS", " alpha-key , beta-key,,gamma-key ")
    monkeypatch.setenv("MEMPROXY_PORT", "9999")
    settings = Settings()
    assert settings.upstream.url == "http://vllm:8000/v1"
    assert settings.server.port == 9999
    assert [key.get_secret_value() for key in settings.auth.api_keys] == ["alpha-key", "beta-key", "gamma-key"]
    assert settings.auth.api_key_digests == {hashlib.sha256(k.encode()).digest() for k in ("alpha-key", "beta-key", "gamma-key")}
    assert "alpha-key" not in repr(settings)


def test_bad_setting_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("MEMPROXY_PORT", "not-a-port")
    with pytest.raises(ValueError, match="port"):
        Settings()
