"""``/v1/memories``: route (HTTP only) → protocol (pydantic) → serving (logic over the engine); ``access`` decides
whose memories a request may touch; ``cli`` is ``memproxy memories …``, an HTTP client of the same endpoints."""
