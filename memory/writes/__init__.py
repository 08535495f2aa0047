"""The write path: durable queue → extraction → embed → dedupe → graph commit → index → ack."""
