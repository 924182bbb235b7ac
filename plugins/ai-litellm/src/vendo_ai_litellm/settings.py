"""Settings of vendo-ai-litellm (the ``[ai-litellm]`` table of ``vendo.toml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class ModelRoute(BaseModel):
    """One model clients may ask for, and where litellm sends it.

    ``id`` is the name clients use; ``model`` is litellm's model string (``openai/gpt-4o-mini``,
    ``anthropic/claude-3-5-haiku-latest``, ``ollama/llama3``, ``azure/<deployment>``...). Its
    prefix names the vendor (BYOK keys are looked up by it) unless ``vendor`` says otherwise.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., min_length=1, max_length=128)
    model: str = Field(..., min_length=1)
    kind: Literal["chat", "embedding"] = "chat"
    vendor: str | None = None
    api_base: str | None = None
    input_cost_per_token: float | None = Field(None, ge=0)
    output_cost_per_token: float | None = Field(None, ge=0)
    fallbacks: list[str] = Field(default_factory=list)
    timeout: float | None = Field(None, gt=0)
    #: ``auto``: models of litellm's ``openai/`` prefix go straight to the vendor over OpenAI's
    #: wire format (no litellm on the call path), others through litellm; ``openai``: this
    #: model's server speaks OpenAI's wire format whatever its prefix (vLLM, Ollama's ``/v1``...);
    #: ``litellm``: always through litellm.
    wire: Literal["auto", "openai", "litellm"] = "auto"

    @property
    def vendor_name(self) -> str:
        """The vendor whose key this model needs."""
        return self.vendor or (self.model.split("/", 1)[0] if "/" in self.model else "openai")

    @property
    def direct(self) -> bool:
        """Whether calls skip litellm (see ``wire``)."""
        if self.wire == "auto":
            return "/" in self.model and self.model.split("/", 1)[0] == "openai"
        return self.wire == "openai"


class LiteLLMSettings(BaseModel):
    """``[ai-litellm]``: the operator's key (managed AI), models, timeouts and retries."""

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr | None = None
    api_base: str | None = None
    timeout: float = Field(60.0, gt=0)
    num_retries: int = Field(0, ge=0, le=10)
    #: Seconds an idle pooled connection to a vendor is kept on the direct path (below the
    #: vendor's own idle timeout, so no request is written to a connection it is closing).
    keepalive_timeout: float = Field(4.0, gt=0)
    models: list[ModelRoute] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> LiteLLMSettings:
        ids = [m.id for m in self.models]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"models: duplicate id(s) {', '.join(duplicates)}")
        for route in self.models:
            for fallback in route.fallbacks:
                if fallback not in ids or fallback == route.id:
                    raise ValueError(f"models.{route.id}.fallbacks: '{fallback}' is not another model id")
        return self
