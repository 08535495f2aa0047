"""memproxy's HTTP front: an OpenAI-compatible endpoint in front of an OpenAI-compatible upstream (vLLM)."""

__version__ = "0.1.0"
