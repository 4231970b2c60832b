"""Upwork Assistant: "Sign in with Upwork" accounts, sessions and Upwork API access."""

__version__ = "0.1.0"
