"""Meilisearch: snapshots, dumps and API exports, and a zero-downtime per-index restore.

    config.py   the [sources.NAME] schema (kind = "meilisearch")
    client.py   HTTP, task waiting and the mapping of Meilisearch errors into Posterity's tree
    source.py   the backup: a metadata artifact, then one artifact per configured mode
    export.py   the NDJSON export format: written page by page, read back line by line
    dumpfile.py reading indexes/<uid>/ out of a Meilisearch dump (gzip tar) as a stream
    restore.py  per-index restore through a temporary index and /swap-indexes
    restore_file.py  a snapshot/dump back to a file, with the import steps (or restart_command)

See docs/meilisearch.md for the user's view.
"""
