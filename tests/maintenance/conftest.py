"""The throwaway PostgreSQL clusters of tests/postgres, for the prune test against a real
archiving server (test_prune_postgres.py)."""

from postgres.conftest import pg_bin, pg_cluster  # noqa: F401  (fixtures)
