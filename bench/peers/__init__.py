"""Peers measured beside Upwork Assistant in the same run."""
