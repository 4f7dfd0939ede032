"""The use-cases: backup, restore, verify, prune, drill — each wires a source, the pipeline and the repository."""
