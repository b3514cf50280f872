from postgres.conftest import pg_bin, pg_cluster  # noqa: F401  (fixtures: real PostgreSQL clusters)
