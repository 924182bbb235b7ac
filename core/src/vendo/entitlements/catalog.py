"""The plan catalog: plans, prices, features and add-ons, declared in a TOML file.

::

    currency = "eur"                      # the catalog's default currency

    [features.semantic_search]
    kind = "metered"                      # boolean | limit | metered
    period = "month"                      # minute | hour | day | month | lifetime (metered)
    description = "AI semantic search requests"

    [plans.basic]
    name = "Basic"
    default = true                        # what a subject without a subscription gets
    features = { semantic_search = { limit = 30, period = "lifetime" }, max_notebooks = 3 }

    [plans.pro]
    name = "Pro"
    trial_days = 14
    prices = [{ interval = "month", currency = "eur", amount = "9.90" },
              { interval = "year", currency = "eur", amount = "99.00" }]
    features = { semantic_search = 100, max_notebooks = "unlimited" }

A price with ``metered_feature`` is usage-based: ``amount`` is charged per unit of that metered
feature the subscriber used, billed in arrears (``kernel.billing.report_usage`` pushes the
counted usage to the provider). It rides along the plan's flat price of the same interval and
currency (an ``amount = 0`` flat price makes a pure pay-as-you-go plan), may be below a cent and
has no seats. ``included`` units per period are free (metered overage)::

    [plans.team]
    name = "Team"
    prices = [{ interval = "month", currency = "eur", amount = "29.00" },
              { interval = "month", currency = "eur", amount = "0.002", metered_feature = "semantic_search",
                included = 1000 }]
    features = { semantic_search = "unlimited" }   # a limit above the included units caps the overage

A feature value is ``true``/``false`` (boolean), a number or ``"unlimited"`` (limit and
metered), or a table ``{ limit = 30, period = "lifetime", per_member = 10 }`` to override the
period or cap each member's share of a pooled workspace quota.

Request rate limits and feature flags are declared in the same file::

    [plans.pro]
    rate_limits = { per_minute = 300, per_day = 10000 }   # per_second, per_minute, per_hour, per_day

    [rate_limit_tiers.partner]            # an API key whose rate_limit_tier is "partner"
    per_minute = 1000                     # gets these limits instead of its plan's
    per_day = 100000

    [plans.pro.license]                   # buying this plan issues a license key
    tier = "pro"                          # what the key carries (default: the plan id)
    product = "qoredb"                    # default "default"
    max_machines = 3                      # activations allowed (default: no cap)
    perpetual = false                     # false: the license follows the subscription period

    [flags.paywall-v2]
    description = "The new paywall"
    default = false                       # the answer for plans the rollout does not name
    rollout = { basic = 50, pro = 0 }     # percent of each plan's subjects who get the flag

A plan without ``rate_limits`` (or a tier with no window) is not rate limited. Rate limits
and flags are operational settings: they always follow the current catalog version.

AI calls (``kernel.ai`` and the ``/v1`` OpenAI-compatible routes) read two more sections::

    [ai]
    aliases = { smart = "gpt-4o", fast = "gpt-4o-mini" }
    # token_feature = "ai_tokens"   metered feature counting tokens, when declared
    # spend_feature = "ai_spend"    metered feature counting micro-dollars (the budget), when declared

    [plans.pro.ai]
    models = ["fast", "smart"]            # allow-list (absent: every model)
    managed = true                        # may use the operator's key without a BYOK key
"""

from __future__ import annotations

import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vendo.errors import ConfigError, NotFound
from vendo.identity.roles import Role

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel

Kind = Literal["boolean", "limit", "metered"]
Period = Literal["minute", "hour", "day", "month", "lifetime"]
UNLIMITED = "unlimited"
_ID = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_TIER = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")  # the API-key plugin's tier names

#: A whole percentage, 0 to 100 (a rollout).
Percent = Annotated[int, Field(ge=0, le=100, strict=True)]

#: Rate-limit windows: their catalog key and length in seconds, shortest first.
WINDOWS: dict[str, int] = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureDefinition(_Strict):
    """A feature of the product, independent of plans."""

    kind: Kind
    period: Period = "month"
    description: str = ""
    unit: str = "request"
    min_role: Role = Role.MEMBER
    failure_policy: Literal["fail_closed", "fail_open"] | None = None

    @property
    def policy(self) -> str:
        """What to do when the counter store is unreachable: metered features fail closed by default."""
        return self.failure_policy or ("fail_closed" if self.kind == "metered" else "fail_open")


class Grant(_Strict):
    """What one plan grants of one feature (``limit`` ``None`` means unlimited)."""

    enabled: bool = True
    limit: int | None = None
    period: Period | None = None
    per_member: int | None = Field(None, ge=0)

    @field_validator("limit", mode="before")
    @classmethod
    def _unlimited(cls, value: Any) -> Any:
        return None if value == UNLIMITED else value

    @field_validator("limit")
    @classmethod
    def _non_negative(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise ValueError("a limit is 0 or more, or \"unlimited\"")
        return value


class Price(_Strict):
    """A price of a plan or add-on: ``amount`` per interval, plus ``per_seat`` for each seat.

    With ``metered_feature`` the price is usage-based: ``amount`` per unit of that feature
    used during the period beyond the first ``included`` units (overage; see the module
    docstring).
    """

    interval: Literal["month", "year"]
    currency: str = Field(..., pattern=r"^[a-z]{3}$")
    amount: Decimal = Field(..., ge=0)
    per_seat: Decimal = Field(Decimal(0), ge=0)
    min_seats: int = Field(1, ge=1)
    metered_feature: str | None = None
    included: int = Field(0, ge=0, strict=True)

    @property
    def metered(self) -> bool:
        """Whether the price is usage-based."""
        return self.metered_feature is not None

    @field_validator("currency", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class RateLimits(_Strict):
    """Requests allowed per fixed window (UTC, aligned on the epoch); ``None``: no limit."""

    per_second: int | None = Field(None, gt=0, strict=True)
    per_minute: int | None = Field(None, gt=0, strict=True)
    per_hour: int | None = Field(None, gt=0, strict=True)
    per_day: int | None = Field(None, gt=0, strict=True)

    def windows(self) -> list[tuple[str, int, int]]:
        """``(window, length in seconds, limit)`` of every limited window, shortest first."""
        return [(window, seconds, limit) for window, seconds in WINDOWS.items()
                if (limit := getattr(self, f"per_{window}")) is not None]


class FlagDefinition(_Strict):
    """A feature flag: on for a percentage of each plan's subjects, ``default`` elsewhere."""

    description: str = ""
    default: bool = Field(False, strict=True)
    rollout: dict[str, Percent] = Field(default_factory=dict)


class PlanLicense(_Strict):
    """``[plans.<id>.license]``: a checkout completed for this plan issues a license key.

    ``tier`` is what the key carries (default: the plan id), ``product`` names the app it
    unlocks, ``max_machines`` caps activations (``None``: no cap) and ``perpetual`` says the
    license never expires; otherwise it follows the subscription's period.
    """

    tier: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_.-]{0,39}$")
    product: str = Field("default", pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    max_machines: int | None = Field(None, ge=1, strict=True)
    perpetual: bool = Field(False, strict=True)


class PlanAI(_Strict):
    """What a plan allows of AI calls (``[plans.<id>.ai]``).

    ``models``: the model ids (or aliases) the plan may call, ``None`` for every model;
    ``managed``: calls without the workspace's own key (BYOK) may use the operator's key.
    """

    models: tuple[str, ...] | None = None
    managed: bool = False

    def allows(self, model: str, aliases: dict[str, str]) -> bool:
        """Whether ``model`` (a resolved id) is on the allow-list, directly or by an alias."""
        if self.models is None:
            return True
        return any(aliases.get(name, name) == model for name in self.models)


class AICatalog(_Strict):
    """Catalog-wide AI settings (``[ai]``).

    ``aliases``: names clients may use for a model id (``{ "smart" = "gpt-4o" }``).
    ``token_feature``: the metered feature counting tokens (prompt + completion) when the
    catalog declares it; ``spend_feature``: the metered feature counting spend in
    micro-dollars (the workspace budget: its limit is the hard stop) when declared.
    ``default_max_tokens``: the completion tokens reserved (and asked of the vendor) when a
    request names no ``max_tokens`` while tokens or spend are metered.
    """

    aliases: dict[str, str] = Field(default_factory=dict)
    token_feature: str = "ai_tokens"
    spend_feature: str = "ai_spend"
    default_max_tokens: int = Field(1024, gt=0)
    warning_ratio: float = Field(0.8, gt=0, le=1)


class Plan(_Strict):
    """A plan: prices, a trial, what it grants and its request rate limits.

    A plan with a ``license`` table (or the shorthand ``licensed = true``, which means a
    license table with every default) is *licensed*: buying it issues a license key.
    """

    id: str
    name: str
    default: bool = False
    trial_days: int = Field(0, ge=0)
    prices: tuple[Price, ...] = ()
    features: dict[str, Grant] = Field(default_factory=dict)
    add_ons: tuple[str, ...] = ()
    licensed: bool = False
    license: PlanLicense | None = None
    rate_limits: RateLimits | None = None
    ai: PlanAI = Field(default_factory=PlanAI)

    @model_validator(mode="after")
    def _license_terms(self) -> Plan:
        # `licensed = true` alone means default terms; a license table implies licensed.
        if self.licensed and self.license is None:
            object.__setattr__(self, "license", PlanLicense())
        elif self.license is not None and not self.licensed:
            object.__setattr__(self, "licensed", True)
        if self.license is not None and self.license.tier is None:
            object.__setattr__(self, "license", self.license.model_copy(update={"tier": self.id}))
        return self

    @property
    def flat_prices(self) -> tuple[Price, ...]:
        """The prices charged per period (seats included), without the usage-based ones."""
        return tuple(p for p in self.prices if not p.metered)

    def usage_prices(self, interval: str, currency: str) -> tuple[Price, ...]:
        """The usage-based prices riding along the flat price at ``interval`` and ``currency``."""
        return tuple(p for p in self.prices if p.metered and p.interval == interval and p.currency == currency)

    def monthly_price(self, currency: str) -> Decimal | None:
        """The plan's monthly price in ``currency`` at its minimum seats (a twelfth of a yearly
        one; usage-based prices left out), or ``None``."""
        for interval, divisor in (("month", 1), ("year", 12)):
            for price in self.flat_prices:
                if price.interval == interval and price.currency == currency:
                    return (price.amount + price.per_seat * price.min_seats) / divisor
        return None


class AddOn(_Strict):
    """Stacks on a plan: adds to feature limits (e.g. +5 collaborators, +1000 AI requests)."""

    id: str
    name: str
    prices: tuple[Price, ...] = ()
    adds: dict[str, int] = Field(default_factory=dict)


class Catalog(_Strict):
    """Every plan, feature, add-on, rate-limit tier and flag, validated as a whole."""

    currency: str = "usd"
    features: dict[str, FeatureDefinition]
    plans: dict[str, Plan]
    add_ons: dict[str, AddOn] = Field(default_factory=dict)
    rate_limit_tiers: dict[str, RateLimits] = Field(default_factory=dict)
    flags: dict[str, FlagDefinition] = Field(default_factory=dict)
    ai: AICatalog = Field(default_factory=AICatalog)

    @model_validator(mode="before")
    @classmethod
    def _expand(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for section in ("plans", "add_ons"):
            items = data.get(section) or {}
            if isinstance(items, dict):
                data[section] = {key: {"id": key, **value} if isinstance(value, dict) else value
                                 for key, value in items.items()}
        for plan in (data.get("plans") or {}).values():
            if isinstance(plan, dict) and isinstance(plan.get("features"), dict):
                plan["features"] = {name: _grant(value) for name, value in plan["features"].items()}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Catalog:
        for name in list(self.features) + list(self.plans) + list(self.add_ons) + list(self.flags):
            if not _ID.match(name):
                raise ValueError(f"'{name}': ids are lowercase letters, digits, '_' or '-' (start with a letter)")
        for tier in self.rate_limit_tiers:
            if not _TIER.match(tier):
                raise ValueError(f"rate_limit_tiers.{tier}: tier names are 1 to 40 lowercase letters, digits, "
                                 "'_', '.' or '-' (start with a letter or digit)")
        for name, flag in self.flags.items():
            for plan in flag.rollout:
                if plan not in self.plans:
                    raise ValueError(f"flags.{name}.rollout.{plan}: unknown plan '{plan}'")
        defaults = [p.id for p in self.plans.values() if p.default]
        if len(defaults) != 1:
            raise ValueError(f"exactly one plan must be `default = true` (found {len(defaults)}: {defaults})")
        for plan in self.plans.values():
            for feature, grant in plan.features.items():
                definition = self.features.get(feature)
                if definition is None:
                    raise ValueError(f"plans.{plan.id}.features.{feature}: not declared under [features]")
                if definition.kind == "boolean" and (grant.limit is not None or grant.period or grant.per_member):
                    raise ValueError(f"plans.{plan.id}.features.{feature}: a boolean feature takes true or false")
                if definition.kind != "metered" and (grant.period or grant.per_member is not None):
                    raise ValueError(f"plans.{plan.id}.features.{feature}: period and per_member are for metered features")
            self._check_usage_prices(plan)
            for add_on in plan.add_ons:
                if add_on not in self.add_ons:
                    raise ValueError(f"plans.{plan.id}.add_ons: unknown add-on '{add_on}'")
        for add_on in self.add_ons.values():
            if any(price.metered for price in add_on.prices):
                raise ValueError(f"add_ons.{add_on.id}.prices: usage-based prices belong to plans")
            for feature in add_on.adds:
                if feature not in self.features or self.features[feature].kind == "boolean":
                    raise ValueError(f"add_ons.{add_on.id}.adds.{feature}: not a limit or metered feature")
        return self

    def _check_usage_prices(self, plan: Plan) -> None:
        """A usage-based price bills a metered feature the plan grants, has no seats, is the only
        one of its feature at its interval and currency, and rides along a flat price there."""
        seen: set[tuple[str, str, str]] = set()
        for index, price in enumerate(plan.prices):
            if not price.metered:
                continue
            where = f"plans.{plan.id}.prices.{index}"
            feature = price.metered_feature or ""
            definition = self.features.get(feature)
            if definition is None or definition.kind != "metered":
                raise ValueError(f"{where}.metered_feature: '{feature}' is not a metered feature under [features]")
            grant = plan.features.get(feature)
            if grant is None or not grant.enabled:
                raise ValueError(f"{where}.metered_feature: plan '{plan.id}' does not grant '{feature}'")
            if price.per_seat or price.min_seats != 1:
                raise ValueError(f"{where}: a usage-based price has no per_seat or min_seats")
            if price.included and grant.limit is not None and grant.limit <= price.included:
                raise ValueError(f"{where}.included: plan '{plan.id}' caps '{feature}' at {grant.limit}, so no "
                                 f"usage beyond the {price.included} included units could be billed")
            if (price.interval, price.currency, feature) in seen:
                raise ValueError(f"{where}: '{feature}' has two usage-based {price.interval}ly "
                                 f"{price.currency.upper()} prices")
            seen.add((price.interval, price.currency, feature))
            if not any(p.interval == price.interval and p.currency == price.currency for p in plan.flat_prices):
                raise ValueError(f"{where}: a usage-based price needs a flat {price.interval}ly "
                                 f"{price.currency.upper()} price beside it (amount = 0 for pay-as-you-go)")
        for index, price in enumerate(plan.prices):
            if price.included and not price.metered:
                raise ValueError(f"plans.{plan.id}.prices.{index}.included: only a usage-based price "
                                 "(metered_feature) includes units")

    @property
    def default_plan(self) -> Plan:
        """The plan of subjects without a subscription."""
        return next(p for p in self.plans.values() if p.default)

    def plan(self, plan_id: str) -> Plan:
        """A plan by id.

        :raises NotFound: ``unknown_plan``.
        """
        if plan_id not in self.plans:
            raise NotFound(f"unknown plan '{plan_id}'", code="unknown_plan")
        return self.plans[plan_id]

    def feature(self, name: str) -> FeatureDefinition:
        """A feature by name.

        :raises NotFound: ``unknown_feature``.
        """
        if name not in self.features:
            raise NotFound(f"unknown feature '{name}'", code="unknown_feature")
        return self.features[name]

    def flag(self, name: str) -> FlagDefinition:
        """A feature flag by name.

        :raises NotFound: ``unknown_flag``.
        """
        if name not in self.flags:
            raise NotFound(f"unknown flag '{name}'", code="unknown_flag")
        return self.flags[name]

    def ordered_plans(self) -> list[Plan]:
        """Plans from cheapest to most expensive (monthly, in the catalog currency; unpriced
        non-default plans, e.g. "contact us" tiers, last)."""
        def price(plan: Plan) -> tuple[int, Decimal]:
            if plan.default:
                return (0, Decimal(0))
            value = plan.monthly_price(self.currency)
            return (1, value) if value is not None else (2, Decimal(0))

        return sorted(self.plans.values(), key=price)


def current_catalog(kernel: Kernel) -> Catalog:
    """The current catalog of ``kernel``: the newest version number (kept by the plan cache, so
    a catalog loaded by another process is seen within ``[entitlements] plan_cache_ttl``),
    then that version from the entitlement service's cache (its definition is read and
    validated once, not on every call).

    :raises NotFound: ``no_catalog``.
    """
    return kernel.entitlements.catalog()


def _grant(value: Any) -> Any:
    if isinstance(value, bool):
        return {"enabled": value, "limit": None}
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return {"limit": value}
    return value


def parse_catalog(data: dict[str, Any], source: str = "catalog", text: str | None = None) -> Catalog:
    """Validate catalog data.

    :raises ConfigError: naming the source, the line (when ``text`` is given) and the field.
    """
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = [str(part) for part in error["loc"]]
            field = ".".join(loc) or "(catalog)"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown field"
            line = _line_of(text, loc) if text else None
            problems.append(f"{source}{f':{line}' if line else ''}: {field}: {message}")
        raise ConfigError("; ".join(problems)) from None


def load_catalog(path: str | Path) -> Catalog:
    """Read and validate a TOML catalog file.

    :raises ConfigError: unreadable file, TOML syntax (with its line) or invalid content.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the catalog: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_catalog(data, str(path), text)


def _line_of(text: str, loc: list[str]) -> int | None:
    """Best effort: the line of the key ``loc`` names, inside the deepest table header of
    ``loc`` present in ``text`` (or that header's line)."""
    lines = text.splitlines()
    for depth in range(len(loc), 0, -1):
        header = ".".join(loc[:depth])
        for number, line in enumerate(lines):
            if line.strip() not in (f"[{header}]", f"[[{header}]]"):
                continue
            if depth == len(loc):
                return number + 1
            key = re.escape(loc[depth])
            for offset in range(number + 1, len(lines)):
                if lines[offset].lstrip().startswith("["):
                    break
                if re.match(rf"^\s*{key}\s*=", lines[offset]) or re.search(rf"[{{,]\s*{key}\s*=", lines[offset]):
                    return offset + 1
            return number + 1
    return None
