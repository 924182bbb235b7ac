"""Usage-based prices in the plan catalog: what a price with ``metered_feature`` must be, and
that it never counts as the plan's price (ordering, monthly price, checkout price)."""

from __future__ import annotations

import tomllib
from decimal import Decimal

import pytest

from vendo.entitlements.catalog import parse_catalog
from vendo.errors import ConfigError

BASE = """
currency = "eur"
[features.api_calls]
kind = "metered"
[features.projects]
kind = "limit"
[plans.free]
name = "Free"
default = true
features = { api_calls = 10 }
"""


def catalog(plan: str):
    text = BASE + plan
    return parse_catalog(tomllib.loads(text), "usage.toml", text)


def test_a_usage_price_rides_along_the_flat_price_and_is_not_the_plan_price() -> None:
    parsed = catalog("""
[plans.cheap]
name = "Cheap"
prices = [{ interval = "month", currency = "eur", amount = "5" }]
[plans.metered]
name = "Metered"
prices = [{ interval = "month", currency = "eur", amount = "0" },
          { interval = "month", currency = "eur", amount = "0.0015", metered_feature = "api_calls" },
          { interval = "year", currency = "eur", amount = "0" }]
features = { api_calls = "unlimited" }
""")
    plan = parsed.plan("metered")
    assert [p.metered for p in plan.prices] == [False, True, False]
    assert len(plan.flat_prices) == 2 and plan.monthly_price("eur") == Decimal(0)
    (usage,) = plan.usage_prices("month", "eur")
    assert (usage.metered_feature, usage.amount) == ("api_calls", Decimal("0.0015"))
    assert plan.usage_prices("year", "eur") == ()
    # a pay-as-you-go plan sorts by its flat price (0), not by its per-unit price
    assert [p.id for p in parsed.ordered_plans()] == ["free", "metered", "cheap"]


@pytest.mark.parametrize(("prices", "features", "message"), [
    ('[{ interval = "month", currency = "eur", amount = "1", metered_feature = "api_calls" }]',
     '{ api_calls = 5 }', "needs a flat monthly EUR price beside it"),
    ('[{ interval = "month", currency = "eur", amount = "9" }, '
     '{ interval = "month", currency = "eur", amount = "1", metered_feature = "nope" }]',
     '{ api_calls = 5 }', "'nope' is not a metered feature"),
    ('[{ interval = "month", currency = "eur", amount = "9" }, '
     '{ interval = "month", currency = "eur", amount = "1", metered_feature = "projects" }]',
     '{ projects = 5 }', "'projects' is not a metered feature"),
    ('[{ interval = "month", currency = "eur", amount = "9" }, '
     '{ interval = "month", currency = "eur", amount = "1", metered_feature = "api_calls" }]',
     '{ projects = 5 }', "does not grant 'api_calls'"),
    ('[{ interval = "month", currency = "eur", amount = "9" }, '
     '{ interval = "month", currency = "eur", amount = "1", metered_feature = "api_calls", per_seat = "2" }]',
     '{ api_calls = 5 }', "no per_seat or min_seats"),
    ('[{ interval = "month", currency = "eur", amount = "9" }, '
     '{ interval = "month", currency = "eur", amount = "1", metered_feature = "api_calls" }, '
     '{ interval = "month", currency = "eur", amount = "2", metered_feature = "api_calls" }]',
     '{ api_calls = 5 }', "two usage-based monthly EUR prices"),
])
def test_invalid_usage_prices_are_refused_naming_the_price(prices: str, features: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        catalog(f'[plans.bad]\nname = "Bad"\nprices = {prices}\nfeatures = {features}\n')
    assert message in str(caught.value) and "plans.bad" in str(caught.value)


def test_included_units_need_a_usage_price_and_room_beyond_the_limit() -> None:
    parsed = catalog('[plans.team]\nname = "Team"\nprices = [{ interval = "month", currency = "eur", amount = "9" }, '
                     '{ interval = "month", currency = "eur", amount = "0.01", metered_feature = "api_calls", '
                     'included = 1000 }]\nfeatures = { api_calls = 5000 }\n')
    assert parsed.plan("team").usage_prices("month", "eur")[0].included == 1000
    with pytest.raises(ConfigError, match="caps 'api_calls' at 1000, so no usage beyond the 1000 included"):
        catalog('[plans.team]\nname = "Team"\nprices = [{ interval = "month", currency = "eur", amount = "9" }, '
                '{ interval = "month", currency = "eur", amount = "0.01", metered_feature = "api_calls", '
                'included = 1000 }]\nfeatures = { api_calls = 1000 }\n')
    with pytest.raises(ConfigError, match="only a usage-based price"):
        catalog('[plans.team]\nname = "Team"\n'
                'prices = [{ interval = "month", currency = "eur", amount = "9", included = 5 }]\n')


def test_add_ons_have_no_usage_prices() -> None:
    with pytest.raises(ConfigError, match="usage-based prices belong to plans"):
        catalog('[add_ons.extra]\nname = "Extra"\n'
                'prices = [{ interval = "month", currency = "eur", amount = "1", metered_feature = "api_calls" }]\n')


def test_lookup_keys_read_back_as_they_were_made() -> None:
    from vendo import LookupKey, parse_lookup_key
    from vendo.billing.service import lookup_key
    from vendo.billing.usage import usage_lookup_key

    flat = lookup_key("team", 3, "year", "EUR")
    assert parse_lookup_key(flat) == LookupKey("team", 3, "year", "eur")
    assert parse_lookup_key(usage_lookup_key(flat, "api_calls")) == LookupKey("team", 3, "year", "eur", "api_calls")
    for other in (None, "", "price_123", "vendo:team:vX:month:eur", "vendo:team:v3:week:eur", "team:v3:month:eur"):
        assert parse_lookup_key(other) is None
