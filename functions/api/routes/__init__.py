"""The API routes, one module per resource (each a Powertools Router, included by app.py)."""
