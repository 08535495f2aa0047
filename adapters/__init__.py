"""memproxy's per-user LoRA adapters, the third tier of memory: ``registry`` (who has which version),
``dataset`` + ``trainer`` + ``jobs`` (train from the user's memories, validate, publish atomically), ``loader``
(keep them loaded in vLLM), ``routing`` (which ``model`` a chat goes to), ``cli`` (``memproxy adapters …``)."""
