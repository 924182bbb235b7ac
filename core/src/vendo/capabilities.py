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

from dataclasses import dataclass, field, fields
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
    #: For a single-provider family: the provider chosen when several are installed and the
    #: settings name none (billing: the no-payment ``local`` one, so nothing charges by surprise).
    fallback: str | None = None


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

#: Normalized billing event types every provider translates its webhooks into. The kernel's
#: subscription state machine is driven by these alone (never by vendor payloads).
BILLING_EVENT_TYPES = (
    "checkout.completed",
    "subscription.created",
    "subscription.updated",
    "subscription.canceled",
    "invoice.paid",
    "payment.failed",
    "refund.created",
)

#: Subscription statuses as Vendo knows them; providers map their vendor's statuses onto these
#: (Stripe's ``incomplete``/``unpaid`` → ``past_due``, ``incomplete_expired`` → ``expired``...).
SUBSCRIPTION_STATUSES = ("trialing", "active", "past_due", "canceled", "expired")


@dataclass(frozen=True)
class CheckoutRequest:
    """What a hosted checkout sells: a plan at an interval, currency and seat count.

    :param subject: the Vendo subject (user or workspace id) the subscription is for; providers
        carry it through the vendor (metadata, ``client_reference_id``) so the webhook events
        name it again.
    :param price_key: the lookup key of the price to sell (see :class:`CatalogPrice`).
    :param customer_id: the provider's customer, when one exists already.
    :param usage_price_keys: the lookup keys of the plan's usage-based prices sold with it
        (line items without a quantity: billed in arrears from the usage reports).
    """

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
    price_key: str | None = None
    customer_id: str | None = None
    usage_price_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckoutSession:
    """A hosted checkout the customer is sent to."""

    id: str
    url: str
    customer_id: str | None = None


@dataclass(frozen=True)
class PortalSession:
    """A hosted customer portal (payment methods, invoices, cancellation) at the vendor."""

    id: str
    url: str


@dataclass(frozen=True)
class CatalogPrice:
    """One price of the plan catalog as pushed to a provider.

    Amounts are in the currency's minor unit (cents). The customer pays ``unit_amount`` per
    period plus ``per_seat_amount`` per seat, with at least ``min_seats`` seats.
    ``lookup_key`` is stable per plan *version*, interval and currency
    (``vendo:<plan>:v<version>:<interval>:<currency>``), so editing a plan creates new
    prices and never changes what existing subscribers pay.

    A usage-based price names its ``metered_feature``; its lookup key ends with
    ``:usage:<feature>``, ``unit_amount`` is the price of one unit rounded to the minor unit
    and ``unit_amount_decimal`` the exact one (a string in minor units, e.g. ``"0.2"`` for a
    fifth of a cent, as Stripe's ``unit_amount_decimal``); the first ``included_units`` of
    each period are free (a graduated price at Stripe).
    """

    lookup_key: str
    plan: str
    plan_name: str
    plan_version: int
    interval: Literal["month", "year"]
    currency: str
    unit_amount: int
    per_seat_amount: int = 0
    min_seats: int = 1
    trial_days: int = 0
    metered_feature: str | None = None
    unit_amount_decimal: str | None = None
    included_units: int = 0


@dataclass(frozen=True)
class SubscriptionChange:
    """A change to a running subscription.

    :param plan: the new plan (``None``: keep it). Upgrades apply now with proration; with
        ``at_period_end`` the change waits for the renewal (the usual downgrade).
    :param price_key: the lookup key of the new price (plan, interval, currency).
    :param seats: the new seat quantity (``None``: keep it).
    :param usage_price_keys: the usage-based prices the subscription bills after the change
        (``None``: keep its usage items as they are; ``()``: none).
    """

    subscription_id: str
    plan: str | None = None
    price_key: str | None = None
    seats: int | None = None
    at_period_end: bool = False
    idempotency_key: str | None = None
    usage_price_keys: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SubscriptionInfo:
    """A subscription as the provider holds it, in Vendo's vocabulary."""

    id: str
    customer_id: str
    status: str
    plan: str | None = None
    subject: str | None = None
    seats: int = 1
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    cancel_at_period_end: bool = False
    trial_end: datetime | None = None


@dataclass(frozen=True)
class Invoice:
    """An invoice (amounts in the currency's minor unit)."""

    id: str
    customer_id: str
    status: str  # draft, open, paid, void, uncollectible
    currency: str
    amount_due: int
    amount_paid: int
    created_at: datetime
    subscription_id: str | None = None
    hosted_url: str | None = None
    pdf_url: str | None = None


@dataclass(frozen=True)
class UsageReport:
    """Metered usage pushed to a provider for usage-based prices (idempotent by key).

    ``price_key`` is the lookup key of the usage-based price the units are billed at, when
    the kernel reports them (a provider billing by meter, like Stripe, needs only the feature).
    """

    subscription_id: str
    feature: str
    quantity: int
    timestamp: datetime
    idempotency_key: str
    customer_id: str | None = None
    price_key: str | None = None


@dataclass(frozen=True)
class BillingEvent:
    """A vendor webhook translated into Vendo's vocabulary.

    :param id: the provider's event id (processing is idempotent on it).
    :param type: one of :data:`BILLING_EVENT_TYPES`.
    :param occurred_at: when the provider says it happened; the kernel orders deliveries by
        it, so an older ``subscription.updated`` never overwrites a newer state.
    :param subject: the Vendo subject, when the vendor object carries it (checkout metadata).
    :param status: for subscription events, one of :data:`SUBSCRIPTION_STATUSES`.
    :param amount: for invoices and refunds, in the currency's minor unit.
    :param data: the rest, provider-specific but JSON-compatible (e.g. ``invoice_id``).
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
    seats: int | None = None
    current_period_end: datetime | None = None
    cancel_at_period_end: bool | None = None
    trial_end: datetime | None = None
    amount: int | None = None
    currency: str | None = None
    checkout_id: str | None = None
    invoice_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible dict of the event (dates as ISO 8601): what the kernel stores and
        what a provider relaying normalized events (e.g. vendo-billing-local) sends."""
        data = {item.name: getattr(self, item.name) for item in fields(self)}
        for name in _EVENT_DATES:
            if data[name] is not None:
                data[name] = data[name].isoformat()
        data["data"] = dict(self.data)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BillingEvent:
        """The event :meth:`to_json` wrote (unknown keys ignored).

        :raises ValueError, TypeError, KeyError: not such a dict.
        """
        names = {item.name for item in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for name in _EVENT_DATES:
            if values.get(name) is not None:
                values[name] = datetime.fromisoformat(values[name])
        return cls(**values)


#: The date fields of :class:`BillingEvent` (ISO 8601 in its JSON form).
_EVENT_DATES = ("occurred_at", "current_period_end", "trial_end")


@runtime_checkable
class BillingProvider(Protocol):
    """Payments and subscriptions at a payment vendor (or a local ledger).

    Every method that creates something at the vendor takes or derives an idempotency key,
    so a retried call never creates a second customer, checkout or charge.

    A provider whose paid checkout converts the subject's running trial (instead of opening a
    second subscription beside it) sets the class attribute ``converts_trials_by_checkout =
    True``; without it the kernel refuses a checkout while a trial runs (409).
    """

    async def create_customer(self, subject: str, email: str | None = None) -> str:
        """Create (or return the existing) customer of ``subject``; return its provider id."""

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        """Open a hosted checkout; the same ``idempotency_key`` returns the same session."""

    async def create_portal(self, customer_id: str, return_url: str) -> PortalSession:
        """Open the vendor's hosted customer portal for ``customer_id``."""

    async def get_subscription(self, subscription_id: str) -> SubscriptionInfo:
        """The subscription as the vendor holds it now.

        :raises NotFound: unknown subscription.
        """

    async def change_subscription(self, change: SubscriptionChange) -> SubscriptionInfo:
        """Change plan and/or seats: now with proration, or at the end of the period."""

    async def cancel_subscription(self, subscription_id: str, at_period_end: bool = True) -> None:
        """Cancel now or at the end of the paid period."""

    async def resume_subscription(self, subscription_id: str) -> SubscriptionInfo:
        """Undo a cancellation scheduled for the end of the period."""

    async def list_invoices(self, customer_id: str) -> list[Invoice]:
        """The customer's invoices, newest first."""

    async def report_usage(self, report: UsageReport) -> None:
        """Push metered usage for a usage-based price (idempotent by ``idempotency_key``)."""

    async def sync_catalog(self, prices: list[CatalogPrice]) -> dict[str, str]:
        """Create or find the vendor's products and prices for ``prices``.

        Idempotent (prices are found again by lookup key). Returns ``{lookup_key: vendor
        price id}``.
        """

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[BillingEvent]:
        """Verify the signature (constant-time) and translate the payload.

        Vendor events Vendo does not use translate to an empty list.

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
    #: The billing subject (workspace id) the license belongs to, when there is one: license
    #: files then carry that subject's current plan, entitlements and quotas.
    subject: str | None = None
    #: How long an app may keep working offline past a license file's TTL (``None``: the
    #: backend's default).
    grace_seconds: int | None = None


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
    subject: str | None = None
    kid: str | None = None
    grace_seconds: int = 0
    revoked_at: datetime | None = None


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


@runtime_checkable
class OfflineLicenseBackend(LicenseBackend, Protocol):
    """A license backend whose proofs an app checks offline with public keys: besides the
    key itself, signed license files (a machine-bound, short-lived snapshot of the license
    with its plan and entitlements) and a signed revocation list.

    Optional: :class:`LicenseBackend` is all the kernel requires; a backend that also
    implements this protocol passes ``vendo_sdk.contracts.OfflineLicenseBackendContract``.
    """

    def get(self, license_id: str) -> License:
        """One license by id.

        :raises NotFound: ``license_not_found``.
        """

    def list(self, *, email: str | None = None, subject: str | None = None, limit: int = 100) -> list[License]:
        """Licenses, newest first, optionally of one buyer email or billing subject."""

    def checkout_file(self, key: str, machine: str, ttl: int | None = None) -> str:
        """A signed license file for a key activated on ``machine``, valid ``ttl`` seconds
        (``None``: the backend's default), carrying the current plan and entitlements.

        :raises Conflict: the key is not valid for that machine (the verification code is
            the error's ``code``: ``revoked``, ``expired``, ``machine_mismatch``...).
        :raises InvalidInput: ``malformed_key``.
        """

    def revocation_list(self) -> str:
        """The signed list of revoked license ids (with its issue time and next update)."""

    def public_keys(self) -> dict[str, str]:
        """The verifying keys by key id (``kid``), base64: what an app embeds."""


# -- AI ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """A model a provider serves, with its prices per token (``None`` when unknown).
    ``provider`` names the vendor whose key the model needs (``openai``, ``anthropic``...):
    a workspace's own keys (BYOK) are looked up by this name."""

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
        """A complete chat answer. ``request.api_key`` is the caller's own vendor key (BYOK);
        ``None`` means the provider's configured (operator) key.

        :raises NotFound: unknown model (code ``model_not_found``).
        :raises Unauthorized: the vendor rejected the key (code ``provider_key_rejected``,
            ``details["provider"]`` naming the vendor; the key is never echoed).
        :raises UpstreamError: the vendor failed, timed out or was unreachable (502).
        """

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """The same answer as chunks; the concatenated deltas equal ``chat``'s content.

        Errors of the vendor (``Unauthorized``, ``UpstreamError``...) are raised from the
        iteration, before the first chunk when the vendor refuses the call outright.
        """

    async def embed(self, model: str, inputs: list[str], *, api_key: str | None = None) -> Embeddings:
        """One vector per input. ``api_key``: the caller's own vendor key (BYOK) for this call;
        ``None``: the provider's configured (operator) key."""

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


# -- notifications ------------------------------------------------------------------------

#: The outbox event type that asks for a notification (an email...). Publish it with
#: :meth:`vendo.Kernel.notify`; the kernel hands it to the notifier of its channel.
NOTIFICATION_REQUESTED = "notification.requested"


@dataclass(frozen=True)
class Notification:
    """A notification to send, as a notifier receives it (one ``notification.requested`` event).

    :param id: the outbox event id (stable across delivery retries).
    :param channel: ``"email"``, or another channel a notifier serves.
    :param to: the recipient (an email address for ``email``).
    :param template: the message template's name (``license_key``, ``invitation``,
        ``password_reset``, ``payment_failed``...).
    :param context: the template's values (JSON-compatible). May hold secrets meant for the
        recipient (a license key, a reset link): never log it.
    :param idempotency_key: the publisher's stable key; notifiers derive the message's
        identity from it (an email's ``Message-ID``), so a retried send is recognisable.
    :param attempt: 1 for the first delivery, 2 for the first retry...
    """

    id: str
    channel: str
    to: str
    template: str
    context: Mapping[str, Any]
    idempotency_key: str
    attempt: int = 1


@dataclass(frozen=True)
class EmailMessage:
    """A rendered email, what an email notifier hands to its transport.

    :param to: the recipient's address.
    :param subject: one line.
    :param text: the plain-text body (always present).
    :param html: the HTML alternative, or ``None``.
    :param headers: extra headers, e.g. ``Message-ID`` (derived from the idempotency key)
        and ``X-Vendo-Idempotency-Key``.
    """

    to: str
    subject: str
    text: str
    html: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Notifier(Protocol):
    """Sends notifications of one channel (``channel = "email"`` for email notifiers).

    ``send`` renders the notification's template with its context and delivers it. It
    raises to have the delivery retried from the outbox (with backoff, ``dead`` after
    ``outbox.max_attempts``): a transport failure is an exception, never a silent return.
    Delivery is at least once: a send that succeeded at the server but whose answer was
    lost is sent again, with the same message identity (``Notification.idempotency_key``).
    An unknown template or unusable context raises :class:`vendo.InvalidInput`.
    """

    channel: str

    async def send(self, notification: Notification) -> None:
        """Render and deliver one notification; raise on failure."""


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("auth", "vendo_register_authenticators", single=False, protocol=Authenticator,
               description="request authenticators, tried as a chain"),
        Family("billing", "vendo_register_billing_providers", single=True, protocol=BillingProvider,
               description="payments, checkout and subscriptions", fallback="local"),
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
        Family("notifier", "vendo_register_notifiers", single=False, protocol=Notifier,
               description="notification senders (email...), one per channel in use"),
    )
}
