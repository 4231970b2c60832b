"""The Upwork sandbox: a local copy of Upwork's OAuth 2.0 and GraphQL endpoints.

A separate ASGI app that the rest of the product reaches only over HTTP, exactly like real
Upwork. See :func:`upwork_assistant.sandbox.app.create_sandbox_app`.
"""

from .app import create_sandbox_app
from .scopes import DEFAULT_SCOPES, SCOPES, Scope, parse_scopes
from .state import Faults, SandboxClient, SandboxConfig, SandboxUser, default_users

__all__ = [
    "DEFAULT_SCOPES",
    "SCOPES",
    "Faults",
    "SandboxClient",
    "SandboxConfig",
    "SandboxUser",
    "Scope",
    "create_sandbox_app",
    "default_users",
    "parse_scopes",
]
