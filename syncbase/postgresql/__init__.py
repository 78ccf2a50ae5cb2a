"""Django's PostgreSQL backend as the project runs it (see base.py)."""
