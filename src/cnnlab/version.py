"""cnnlab's version (pyproject.toml's), recorded with every run."""

__version__ = "0.1.0"
