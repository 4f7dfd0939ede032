"""One restorer per source kind, registered as ``SourceEntry.restorer`` (see ``operations.restore``).

Each module holds the kind's typed request, the table of ``posterity restore`` options that
apply to the kind, and the restorer that runs it; the shared guard does the rest.
"""
