"""Fixtures shared by every test folder (the real stack lives in :mod:`driftwarden.tests.realstack`)."""

from driftwarden.tests.realstack import stack, stack_env, stack_settings  # noqa: F401  (fixtures)
