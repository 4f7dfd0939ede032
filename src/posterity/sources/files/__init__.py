"""Configuration-file backups: a pax tar of configured paths, with a per-file manifest.

- ``config``  — the ``[sources.NAME] kind = "files"`` schema;
- ``scan``    — walk the configured paths (hashing, warnings, the pre-pass ``scan``);
- ``excludes``— the exclude patterns (globs with ``**``);
- ``entries`` — the per-file records the manifest keeps, and their content digest;
- ``source``  — ``FilesSource``: the tar stream, written by a producer thread into a pipe;
- ``tarsafe`` — member-by-member checks that keep a restore inside its target folder;
- ``restore`` — extract into a staging folder inside the target, then move into place.
"""
