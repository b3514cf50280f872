"""PostgreSQL as a backup source: finding the tools, connecting, logical dump and restore."""
