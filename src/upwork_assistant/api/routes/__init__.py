"""The JSON API's routers, one module per area; app.py mounts them."""
