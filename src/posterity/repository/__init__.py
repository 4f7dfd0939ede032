"""Key layout, manifests, catalog, locks: what the stored bytes mean."""

from .layout import new_backup_id
from .manifest import ArtifactRecord, Manifest
from .repository import Repository

__all__ = ["ArtifactRecord", "Manifest", "Repository", "new_backup_id"]
