"""Built-in plugins: registered through the ``vendo`` distribution's own entry points,
like any third-party plugin, and always loaded."""
