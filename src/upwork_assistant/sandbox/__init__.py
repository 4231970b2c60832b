"""The Upwork sandbox: a local copy of Upwork's OAuth 2.0 and GraphQL endpoints.

A separate ASGI app that the rest of the product reaches only over HTTP, exactly like real
Upwork. See :func:`upwork_assistant.sandbox.app.create_sandbox_app`.
"""

from .app import create_sandbox_app
from .state import Faults, SandboxClient, SandboxConfig, SandboxUser, default_users

__all__ = [
    "Faults",
    "SandboxClient",
    "SandboxConfig",
    "SandboxUser",
    "create_sandbox_app",
    "default_users",
]
