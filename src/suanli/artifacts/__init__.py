"""Artifacts: the bytes tenants bring (work folders, inputs) and take back (outputs)."""

from .archive import DOWNLOAD_MARKER, PackedFile, UnsafeArchive, list_files, pack, unpack, walk
from .blobs import BlobError, BlobStore, Stored, is_sha256

__all__ = ["DOWNLOAD_MARKER", "BlobError", "BlobStore", "PackedFile", "Stored", "UnsafeArchive", "is_sha256",
           "list_files", "pack", "unpack", "walk"]
