"""``POST /v1/responses``: OpenAI's Responses API, with memory."""
