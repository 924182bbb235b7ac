"""The kernel's AI domain (``kernel.ai``): gated, metered chat, streaming, embeddings and
models over the active AI providers, the BYOK vault and API-key budgets; the
OpenAI-compatible ``/v1`` routes. No vendor library is imported here: providers are plugins."""

from vendo.ai.service import AI, AIRefused, Caller

__all__ = ["AI", "AIRefused", "Caller"]
