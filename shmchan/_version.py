"""The package version; stamped into the compiled extension and checked at import."""

__version__ = "0.1.0"
