"""Demo material: the Posters.science sample database, and fingerprints to compare databases."""

from posterity.demo.fingerprints import fingerprint, table_row_counts
from posterity.demo.sample_data import SCHEMA_SQL, load_sample

__all__ = ["SCHEMA_SQL", "fingerprint", "load_sample", "table_row_counts"]
