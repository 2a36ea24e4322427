"""Content-addressed bytes through fsspec: `<root>/<tenant>/<sha[:2]>/<sha>`.

A local folder under $SUANLI_HOME by default; any fsspec URL (`s3://bucket/suanli`, with the
backend's package installed and its credentials in the environment) in production. A blob is
written to a temporary name while its SHA-256 is computed, checked against what the client
announced, and only then moved to its address: an interrupted or refused upload leaves nothing.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import fsspec  # type: ignore[import-untyped]

CHUNK = 1 << 20
_HEX = frozenset("0123456789abcdef")


class BlobError(Exception):
    """An upload that cannot be stored: over its size limit, or not the announced content."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def is_sha256(text: str) -> bool:
    return len(text) == 64 and set(text) <= _HEX


@dataclass(frozen=True, slots=True)
class Stored:
    sha256: str
    size: int
    new: bool  # False: the content was there already (nothing more was kept)


class BlobStore:
    def __init__(self, url: str, **options: Any) -> None:
        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **options)
        self.root = self.root.rstrip("/")
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple)
                                else (self.fs.protocol,))
        if self.local:
            os.makedirs(self.root, mode=0o700, exist_ok=True)

    def path(self, tenant_id: int, sha256: str) -> str:
        if not is_sha256(sha256):
            raise ValueError(f"not a SHA-256: {sha256!r}")
        return f"{self.root}/{int(tenant_id)}/{sha256[:2]}/{sha256}"

    def local_path(self, tenant_id: int, sha256: str) -> str | None:
        """The file on this machine's disk, when the store is a local folder."""
        return self.path(tenant_id, sha256) if self.local else None

    def exists(self, tenant_id: int, sha256: str) -> bool:
        return bool(self.fs.exists(self.path(tenant_id, sha256)))

    def put(self, tenant_id: int, chunks: Iterable[bytes], *, max_size: int,
            expect_sha256: str | None = None, expect_size: int | None = None) -> Stored:
        """Store streamed bytes; BlobError (nothing kept) past `max_size` or on a mismatch."""
        if expect_sha256 is not None and not is_sha256(expect_sha256):
            raise BlobError(f"{expect_sha256!r} is not a SHA-256 (64 lowercase hex digits)")
        tmp_dir = f"{self.root}/{int(tenant_id)}/.incoming"
        self.fs.makedirs(tmp_dir, exist_ok=True)
        tmp = f"{tmp_dir}/{secrets.token_hex(16)}"
        digest = hashlib.sha256()
        size = 0
        try:
            with self.fs.open(tmp, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_size:
                        raise BlobError(f"over the limit of {max_size:,} bytes", too_large=True)
                    digest.update(chunk)
                    out.write(chunk)
            sha = digest.hexdigest()
            if expect_size is not None and size != expect_size:
                raise BlobError(f"received {size:,} bytes, announced {expect_size:,}")
            if expect_sha256 is not None and sha != expect_sha256:
                raise BlobError(f"the content's SHA-256 is {sha}, not the announced "
                                f"{expect_sha256}")
            final = self.path(tenant_id, sha)
            if self.fs.exists(final):
                return Stored(sha, size, new=False)
            self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
            self.fs.mv(tmp, final)
            return Stored(sha, size, new=True)
        finally:
            try:
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
            except OSError:
                pass

    def put_file(self, tenant_id: int, path: str, *, max_size: int) -> Stored:
        with open(path, "rb") as fh:
            return self.put(tenant_id, iter(lambda: fh.read(CHUNK), b""), max_size=max_size)

    def open(self, tenant_id: int, sha256: str) -> IO[bytes]:
        fh: IO[bytes] = self.fs.open(self.path(tenant_id, sha256), "rb")
        return fh

    def iter_bytes(self, tenant_id: int, sha256: str, start: int = 0) -> Iterator[bytes]:
        with self.open(tenant_id, sha256) as fh:
            if start:
                fh.seek(start)
            while chunk := fh.read(CHUNK):
                yield chunk

    def delete(self, tenant_id: int, sha256: str) -> None:
        path = self.path(tenant_id, sha256)
        if self.fs.exists(path):
            self.fs.rm(path)
