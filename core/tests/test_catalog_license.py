"""The plan catalog's ``[plans.<id>.license]`` extension: defaults, shorthand, validation."""

from __future__ import annotations

import pytest

from vendo.entitlements.catalog import load_catalog, parse_catalog
from vendo.errors import ConfigError

BASE = """
[features.er_diagram]
kind = "boolean"

[plans.core]
name = "Core"
default = true

[plans.pro]
name = "Pro"
features = { er_diagram = true }
"""


def _load(tmp_path, extra: str):
    path = tmp_path / "plans.toml"
    path.write_text(BASE + extra)
    return load_catalog(path)


def test_a_license_table_makes_the_plan_licensed_with_its_terms(tmp_path) -> None:
    catalog = _load(tmp_path, """
[plans.pro.license]
tier = "pro-plus"
product = "qoredb"
max_machines = 3
perpetual = true
""")
    plan = catalog.plan("pro")
    assert plan.licensed
    assert (plan.license.tier, plan.license.product, plan.license.max_machines, plan.license.perpetual) == (
        "pro-plus", "qoredb", 3, True)
    assert not catalog.plan("core").licensed and catalog.plan("core").license is None


def test_defaults_tier_is_the_plan_id_product_default_subscription_bound(tmp_path) -> None:
    plan = _load(tmp_path, "\n[plans.pro.license]\n").plan("pro")
    assert plan.licensed
    assert (plan.license.tier, plan.license.product, plan.license.max_machines, plan.license.perpetual) == (
        "pro", "default", None, False)


def test_licensed_true_is_shorthand_for_default_terms() -> None:
    catalog = parse_catalog({"features": {}, "plans": {"core": {"name": "Core", "default": True},
                                                       "team": {"name": "Team", "licensed": True}}})
    assert catalog.plan("team").license.tier == "team"
    assert catalog.plan("team").license.perpetual is False


@pytest.mark.parametrize(("table", "field"), [
    ('max_machines = 0', "max_machines"),
    ('max_machines = "3"', "max_machines"),
    ('perpetual = "yes"', "perpetual"),
    ('tier = "Pro Tier"', "tier"),
    ('product = ""', "product"),
    ('machines = 3', "machines"),
])
def test_invalid_license_terms_name_file_line_and_field(tmp_path, table: str, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f"\n[plans.pro.license]\n{table}\n")
    message = caught.value.message
    assert f"plans.pro.license.{field}" in message
    assert "plans.toml:" in message


def test_the_qoredb_example_catalog_licenses_pro_and_team() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    catalog = load_catalog(root / "examples" / "catalogs" / "qoredb.toml")
    assert catalog.plan("pro").license.tier == "pro" and catalog.plan("team").license.tier == "team"
    assert catalog.plan("core").license is None
