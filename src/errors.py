"""The errors hypertune raises on purpose, and what the command line does with each."""

from __future__ import annotations


class HypertuneError(Exception):
    """Something the user can fix (data, flags, a missing experiment); the message says what
    and how. The command line prints it as one paragraph and exits with code 2."""


class Interrupted(Exception):
    """A run stopped before it finished (Ctrl-C); the message says how to continue it. The
    command line prints it and exits with code 130."""


class AnalysisError(HypertuneError):
    """Input the analysis cannot use; the message says what to do instead."""
