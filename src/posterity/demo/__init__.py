"""Demo material: the Posters.science sample database."""

from posterity.demo.sample_data import (
    SCHEMA_SQL,
    fingerprint,
    load_sample,
    table_row_counts,
)

__all__ = ["SCHEMA_SQL", "fingerprint", "load_sample", "table_row_counts"]
