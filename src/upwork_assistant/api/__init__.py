"""The HTTP face of the product: what only HTTP needs (request metrics today)."""
