"""Capability families and the protocols their providers implement.

A family is a named registry filled by a ``vendo_register_*`` hook. Some families need
exactly one active provider (billing, license, vector_store); the others may have several.

The protocols below are the first version of each family's interface: the methods every
provider has. Capability work extends them (adding methods with defaults, never changing
existing ones within an API major version), and the SDK's contract suite of each family
(``vendo_sdk.contracts``) is the executable definition of what a provider must do.

Conventions: methods that reach the network are ``async`` (billing, AI, knowledge, vector
stores); license backends are synchronous (local cryptography and storage); a tool's ``run``
and an authenticator's ``authenticate`` may be either. Providers raise :class:`vendo.VendoError`
subclasses for problems a caller can act on (``InvalidInput``, ``InvalidSignature``...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, AsyncIterator, Awaitable, Callable, Literal, Mapping, Protocol, runtime_checkable


@dataclass(frozen=True)
class Family:
    """A capability family: its name, the hook that fills it and how many may be active."""

    name: str
    hook: str
    single: bool
    protocol: type | None = None
    description: str = ""


# -- auth ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who is calling: the result of authentication.

    :param subject: the authenticated user's id (or a service identity).
    :param workspace: the workspace the request acts on, if any.
    :param scopes: the permissions granted to this credential.
    :param method: how the caller authenticated (``"session:password"``, ``"api_key"``...).
    :param credential: the id of the credential used (session family, API key id), for audit
        and per-credential limits.
    :param attributes: authenticator-specific facts (e.g. an API key's rate-limit tier).
    """

    subject: str
    workspace: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    method: str = ""
    credential: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Authenticator(Protocol):
    """Turns an incoming request into a :class:`Principal`, or ``None`` if its credentials
    are not of this authenticator's kind (the next one in the chain is then tried)."""

    def authenticate(self, request: Any) -> Principal | None | Awaitable[Principal | None]:
        """Return a principal, ``None`` to pass, or raise ``Unauthorized`` for bad credentials."""


# -- tools -------------------------------------------------------------------------------


@runtime_checkable
class Tool(Protocol):
    """A callable capability with a JSON-schema interface (the function-calling shape)."""

    name: str
    description: str
    parameters: dict[str, Any]

    def run(self, arguments: dict[str, Any]) -> Any:
        """Run with arguments valid against ``parameters`` (raise ``InvalidInput`` otherwise);
        return a JSON-serialisable result, or an awaitable of one."""


# -- billing -----------------------------------------------------------------------------

#: Normalized billing event types every provider translates its webhooks into.
BILLING_EVENT_TYPES = (
    "checkout.completed",
    "subscription.created",
    "subscription.updated",
    "subscription.canceled",
    "invoice.paid",
    "payment.failed",
    "refund.created",
)


@dataclass(frozen=True)
class CheckoutRequest:
    """What a hosted checkout sells: a plan at an interval, currency and seat count."""

    subject: str
    plan: str
    interval: Literal["month", "year"] = "month"
    currency: str = "usd"
    seats: int = 1
    trial_days: int = 0
    success_url: str = ""
    cancel_url: str = ""
    customer_email: str | None = None
    idempotency_key: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckoutSession:
    """A hosted checkout the customer is sent to."""

    id: str
    url: str
    customer_id: str | None = None


@dataclass(frozen=True)
class BillingEvent:
    """A vendor webhook translated into Vendo's vocabulary.

    :param id: the provider's event id (processing is idempotent on it).
    :param type: one of :data:`BILLING_EVENT_TYPES`.
    :param occurred_at: when the provider says it happened (orders out-of-order deliveries).
    """

    id: str
    type: str
    occurred_at: datetime
    subject: str | None = None
    customer_id: str | None = None
    subscription_id: str | None = None
    plan: str | None = None
    status: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class BillingProvider(Protocol):
    """Payments and subscriptions at a payment vendor (or a local ledger)."""

    async def create_customer(self, subject: str, email: str | None = None) -> str:
        """Create (or return the existing) customer of ``subject``; return its provider id."""

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        """Open a hosted checkout; the same ``idempotency_key`` returns the same session."""

    async def cancel_subscription(self, subscription_id: str, at_period_end: bool = True) -> None:
        """Cancel now or at the end of the paid period."""

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[BillingEvent]:
        """Verify the signature (constant-time) and translate the payload.

        :raises InvalidSignature: bad, missing or stale signature.
        """


# -- licensing ---------------------------------------------------------------------------

#: Machine-readable outcomes of a license verification.
LICENSE_CODES = (
    "valid",
    "expired",
    "revoked",
    "machine_mismatch",
    "activation_limit",
    "unknown_signing_key",
    "malformed_key",
    "clock_tampered",
    "file_expired",
)


@dataclass(frozen=True)
class LicenseRequest:
    """What a license grants."""

    email: str
    tier: str
    product: str = "default"
    features: tuple[str, ...] = ()
    expires_at: datetime | None = None
    machine: str | None = None
    max_machines: int | None = None


@dataclass(frozen=True)
class License:
    """An issued license and its key (the string the customer pastes)."""

    id: str
    key: str
    email: str
    tier: str
    product: str
    features: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime | None = None
    machine: str | None = None
    max_machines: int | None = None


@dataclass(frozen=True)
class Verification:
    """The answer to "is this key good here and now?": ``code`` is one of :data:`LICENSE_CODES`."""

    code: str
    license: License | None = None
    message: str = ""

    @property
    def valid(self) -> bool:
        """True only for ``code == "valid"``."""
        return self.code == "valid"


@runtime_checkable
class LicenseBackend(Protocol):
    """Issues and checks license keys."""

    def issue(self, request: LicenseRequest) -> License:
        """Create and sign a new license."""

    def verify(self, key: str, machine: str | None = None) -> Verification:
        """Check a key (signature, expiry, revocation, machine); never raises for a bad key."""

    def revoke(self, license_id: str) -> None:
        """Revoke a license; later verifications answer ``revoked``."""

    def activate(self, key: str, machine: str) -> Verification:
        """Bind a key to a machine; ``activation_limit`` past ``max_machines``."""

    def deactivate(self, key: str, machine: str) -> None:
        """Free the machine's activation."""

    def activations(self, key: str) -> list[str]:
        """The machines a key is activated on."""


# -- AI ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """A model a provider serves, with its prices per token (``None`` when unknown)."""

    id: str
    provider: str
    kind: Literal["chat", "embedding"] = "chat"
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None


@dataclass(frozen=True)
class Usage:
    """Tokens a call consumed."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ChatRequest:
    """A chat completion request in OpenAI's shape (``messages`` are role/content dicts)."""

    model: str
    messages: tuple[Mapping[str, Any], ...]
    temperature: float | None = None
    max_tokens: int | None = None
    api_key: str | None = None
    timeout: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChatResponse:
    """A finished chat completion."""

    id: str
    model: str
    content: str
    finish_reason: str
    usage: Usage


@dataclass(frozen=True)
class ChatChunk:
    """One piece of a streamed completion; the last one carries ``finish_reason`` and ``usage``."""

    id: str
    model: str
    delta: str
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass(frozen=True)
class Embeddings:
    """Vectors for a list of inputs, in input order."""

    model: str
    vectors: tuple[tuple[float, ...], ...]
    usage: Usage


@runtime_checkable
class AIProvider(Protocol):
    """Chat, streaming and embeddings from one or more models."""

    async def models(self) -> list[ModelInfo]:
        """The models this provider serves."""

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """A complete chat answer.

        :raises NotFound: unknown model (code ``model_not_found``).
        """

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """The same answer as chunks; the concatenated deltas equal ``chat``'s content."""

    async def embed(self, model: str, inputs: list[str]) -> Embeddings:
        """One vector per input."""

    def count_tokens(self, model: str, messages: list[Mapping[str, Any]]) -> int:
        """Prompt tokens the messages would cost."""

    def cost(self, model: str, usage: Usage) -> float:
        """Price of a call in US dollars (0.0 for free or self-hosted models)."""


# -- knowledge ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    """A document fetched from a knowledge source."""

    id: str
    title: str
    text: str
    url: str | None = None
    mime_type: str = "text/plain"
    updated_at: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class KnowledgeConnector(Protocol):
    """Reads documents from a source (files, URLs, Notion, Drive...)."""

    def fetch(self, source: Mapping[str, Any]) -> AsyncIterator[Document]:
        """Yield the documents of ``source`` (connector-specific keys, e.g. ``{"path": ...}``).

        :raises InvalidInput: the source description is not valid for this connector.
        """


@dataclass(frozen=True)
class VectorMatch:
    """A search hit: the item id, its similarity score (higher is closer) and metadata."""

    id: str
    score: float
    metadata: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class VectorStore(Protocol):
    """Stores embeddings by namespace and finds the nearest ones."""

    async def upsert(self, namespace: str, items: list[tuple[str, list[float], Mapping[str, Any]]]) -> None:
        """Insert or replace ``(id, vector, metadata)`` items."""

    async def query(self, namespace: str, vector: list[float], top_k: int = 5) -> list[VectorMatch]:
        """The ``top_k`` closest items, best first; namespaces never mix."""

    async def delete(self, namespace: str, ids: list[str]) -> None:
        """Remove items (unknown ids are ignored)."""


# -- counters ------------------------------------------------------------------------------

#: The periods a counter key can name: quota periods (``lifetime`` never resets) and the
#: windows of request rate limits (``second`` to ``day``).
COUNTER_PERIODS = ("second", "minute", "hour", "day", "month", "lifetime")

#: Key of ``session.info`` holding the undo actions registered with :func:`on_rollback`.
COMPENSATIONS = "vendo.compensations"


def counter_key(subject: str, feature: str, period: str, start: datetime) -> str:
    """The key of the counter of ``subject`` (a subject id, or ``<workspace>/<member>`` for a
    member's share of a pooled quota) for ``feature`` in the period starting at ``start``
    (UTC): ``<subject>:<feature>:<period>:<YYYYmmddTHHMM>``. Stores treat keys as opaque
    strings except for :func:`counter_period`."""
    return f"{subject}:{feature}:{period}:{start.strftime('%Y%m%dT%H%M')}"


def counter_period(key: str) -> str | None:
    """The period a counter key ends with, ``<...>:<period>:<start>`` (quota counters made by
    :func:`counter_key`, rate-limit windows ``rl:<scope>:<window>:<epoch>``), or ``None``.
    Stores use it to let the counters of finished periods expire and keep ``lifetime`` ones."""
    parts = key.rsplit(":", 2)
    return parts[1] if len(parts) == 3 and parts[1] in COUNTER_PERIODS else None


def on_rollback(session: Any, undo: Callable[[], None]) -> None:
    """Register ``undo`` to run if ``session``'s transaction does not commit.

    For counter stores whose writes live outside the database (Redis...): after moving a
    counter, register the opposite move, so a counter never keeps units whose ledger entry
    was rolled back. The entitlement service runs the actions of a failed transaction in
    reverse order and drops them once it commits. ``session`` may be ``None`` (nothing to
    undo into)."""
    if session is not None:
        session.info.setdefault(COMPENSATIONS, []).append(undo)


@dataclass(frozen=True)
class Bucket:
    """One counter to move, and the limit it must stay within (``None``: unlimited)."""

    key: str
    limit: int | None


@runtime_checkable
class CounterStore(Protocol):
    """The counters family's protocol.

    ``session`` is the SQLAlchemy session of the caller's transaction, where the usage
    ledger entry of the same operation is written. A store inside the database (``sql``)
    writes through it, so counter and ledger commit together. A store outside it registers,
    for every move, the opposite move with :func:`on_rollback`. A store that cannot be
    reached raises :class:`vendo.CounterStoreUnavailable` (and changes nothing); each
    feature's failure policy then decides (``fail_closed``: the caller gets a 503;
    ``fail_open``: allowed, journalled and applied later). A store that lost its data (a
    restart without persistence) raises it with ``details["reason"] == "lost"`` until
    :meth:`overwrite` has restored it from the ledger.
    """

    def try_add(self, session: Any, buckets: list[Bucket], amount: int) -> list[int] | None:
        """Add ``amount`` to every bucket if all stay within their limits; return the new
        values, or ``None`` (and change nothing) when one would exceed its limit. Atomic
        across buckets and across processes."""

    def add(self, session: Any, buckets: list[Bucket], amount: int) -> list[int]:
        """Add ``amount`` (possibly negative) unconditionally; return the new values."""

    def read(self, session: Any, keys: list[str]) -> list[int]:
        """Current values (0 for unknown keys)."""

    def overwrite(self, session: Any, values: dict[str, int]) -> None:
        """Set each counter of ``values`` to its value (``vendo usage rebuild``: totals
        recomputed from the ledger). Not undone on rollback: the values come from committed
        data. Afterwards a store that had lost its data counts again."""


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("auth", "vendo_register_authenticators", single=False, protocol=Authenticator,
               description="request authenticators, tried as a chain"),
        Family("billing", "vendo_register_billing_providers", single=True, protocol=BillingProvider,
               description="payments, checkout and subscriptions"),
        Family("license", "vendo_register_license_backends", single=True, protocol=LicenseBackend,
               description="license keys: issue, verify, activate"),
        Family("ai", "vendo_register_ai_providers", single=False, protocol=AIProvider,
               description="chat, embeddings and model catalogs"),
        Family("knowledge", "vendo_register_knowledge_connectors", single=False, protocol=KnowledgeConnector,
               description="document sources for knowledge bases"),
        Family("vector_store", "vendo_register_vector_stores", single=True, protocol=VectorStore,
               description="similarity search over embeddings"),
        Family("tool", "vendo_register_tools", single=False, protocol=Tool,
               description="tools callable by agents and integrators"),
        Family("counters", "vendo_register_counter_stores", single=True, protocol=CounterStore,
               description="usage counters and rate-limit windows"),
    )
}
