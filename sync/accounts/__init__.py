"""API tokens and service accounts (models of the `sync` app)."""
