"""Plans, entitlements, metering and quotas: what a subject may use and how much is left.

``kernel.entitlements`` answers ``check`` and records usage with ``consume`` (atomic
check-and-record), ``track`` (record without gating), ``refund``, and ``reserve`` →
``commit``/``release`` for work of unknown cost. Counters live in the active counter store
(SQL by default); every accepted unit is in the usage ledger exactly once.
"""
