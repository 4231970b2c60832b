"""Upwork: OAuth client, token vault, GraphQL client, profile validation and sync."""
