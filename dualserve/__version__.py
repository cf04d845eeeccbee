"""The version, in a module of its own: modules that read it never import the package root."""

__version__ = "0.1.0"
