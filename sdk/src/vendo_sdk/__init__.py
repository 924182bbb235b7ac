"""vendo-sdk: write, test, check and publish Vendo plugins.

- ``vendo-sdk new NAME --kind KIND``: scaffold a plugin package that passes its own tests.
- ``vendo-sdk check PATH``: validate a plugin package without running a server.
- ``vendo-sdk hooks``: the hook reference.
- pytest plugin (auto-registered): fixtures ``vendo_kernel``, ``vendo_client``, ``vendo_settings``,
  ``vendo_clock``; contract suites in :mod:`vendo_sdk.contracts`.
"""

__version__ = "0.1.0"
