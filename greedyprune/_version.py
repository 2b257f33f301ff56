"""The version, written once: the package, its metadata (pyproject.toml) and run folders read it here."""

__version__ = "0.1.0"
