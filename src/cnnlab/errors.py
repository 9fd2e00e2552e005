"""The exceptions cnnlab raises for problems a user can fix.

Every message says what was wrong and how to fix it; the command line prints it
without a traceback and exits non-zero.
"""

from __future__ import annotations


class CnnlabError(Exception):
    """Base class of every error cnnlab reports to a user."""


class DataError(CnnlabError):
    """A dataset file is missing, unreadable, malformed or fails its checksum."""


class ConfigError(CnnlabError, ValueError):
    """A configuration value is out of range or of the wrong kind."""


class CheckpointError(CnnlabError):
    """A run directory or saved model cannot be read or written."""
