"""The memory browser: a static page at ``/ui`` over the memory REST API (``/v1/memories``)."""
