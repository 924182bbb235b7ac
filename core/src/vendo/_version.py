"""Version numbers of the kernel distribution and of the plugin API it offers."""

__version__ = "0.1.0"

#: Version of the plugin-facing API (hooks, public surface). A plugin declares the
#: range it supports with a module attribute, e.g. ``vendo_api = ">=1.0,<2"``.
API_VERSION = "1.0"
