"""vendo-ai-litellm: Vendo's AI provider through litellm (OpenAI, Anthropic, Ollama, Azure, Mistral...).

Models are declared in the ``[ai-litellm]`` settings (the names clients use, litellm's model
strings, prices, fallbacks, timeouts); the operator's key is a setting too, and a workspace's
own key (BYOK) is handed over by the kernel per call. Importing this module is cheap: litellm
is imported on the first call. See the README.
"""

from __future__ import annotations

from typing import Any

from vendo import hookimpl

vendo_api = ">=1.0,<2"

#: The plugin's entry point name and settings table.
PLUGIN_NAME = "ai-litellm"
#: The name the provider is registered under (family ``ai``).
PROVIDER_NAME = "litellm"


@hookimpl
def vendo_settings_model() -> Any:
    """The ``[ai-litellm]`` settings (see :class:`vendo_ai_litellm.settings.LiteLLMSettings`)."""
    from vendo_ai_litellm.settings import LiteLLMSettings

    return LiteLLMSettings


@hookimpl
def vendo_register_ai_providers(register: Any, settings: Any) -> None:
    """Register the ``litellm`` AI provider."""
    from vendo_ai_litellm.provider import LiteLLMProvider

    register(PROVIDER_NAME, LiteLLMProvider(settings))


def _providers(kernel: Any) -> list[Any]:
    from vendo_ai_litellm.provider import LiteLLMProvider

    return [p for p in kernel.providers.active("ai") if isinstance(p, LiteLLMProvider)]


@hookimpl
async def vendo_startup(kernel: Any, settings: Any) -> None:
    """Open the connection pool of the direct path for the serving loop."""
    for provider in _providers(kernel):
        provider.direct.open()


@hookimpl
async def vendo_shutdown(kernel: Any, settings: Any) -> None:
    """Close the pooled vendor connections of the direct path (the serving loop's)."""
    for provider in _providers(kernel):
        await provider.direct.aclose()
