"""PostgreSQL sources: logical (pg_dump) and, later, physical (base backup + WAL)."""
