"""Posterity: backup and disaster recovery for PostgreSQL, Meilisearch and files."""

__version__ = "0.1.0"
