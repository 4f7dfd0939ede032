"""Sources: produce and consume the bytes of one kind of system."""

from .base import Artifact, Source
from .registry import SOURCES, make_source, source_model

__all__ = ["SOURCES", "Artifact", "Source", "make_source", "source_model"]
