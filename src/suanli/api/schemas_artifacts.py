"""API models of the artifact store and datasets (see services/artifacts.py, datasets.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from .schemas import Input, Output, Page

Bytes = Annotated[int, Field(ge=0, le=2**62)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ArtifactPublic(Output):
    sha256: str
    size_bytes: int
    kind: Literal["upload", "workdir", "dataset", "outputs"]
    name: str
    tenant_id: int
    created_at: datetime
    job_id: int | None
    expires_at: datetime | None


ArtifactPage = Page[ArtifactPublic]


class StorageQuotaSet(Input):
    """A tenant's storage quota; null (or absent): the platform's default."""

    bytes: Bytes | None = None
    count: Annotated[int | None, Field(ge=0, le=2**31 - 1)] = None


class StorageQuotaPublic(BaseModel):
    tenant_id: int
    used_bytes: int
    used_count: int
    quota_bytes: int
    quota_count: int
    default_bytes: bool
    default_count: bool


class DatasetCreate(Input):
    """A dataset living at a center (`center`, `path`, `size_bytes`, optional `sha256`) or
    uploaded (`artifact`: the SHA-256 of a tar artifact of this tenant)."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    center: Annotated[str | None, Field(max_length=64)] = None
    path: Annotated[str | None, Field(max_length=1000)] = None
    size_bytes: Bytes | None = None
    sha256: Sha256 | None = None
    artifact: Sha256 | None = None


class DatasetLocationPublic(BaseModel):
    center: str
    path: str


class DatasetPublic(BaseModel):
    id: int
    tenant_id: int
    name: str
    size_bytes: int
    sha256: str | None
    artifact_sha256: str | None
    uploaded: bool
    created_at: datetime
    locations: list[DatasetLocationPublic]


DatasetPage = Page[DatasetPublic]


class OutputsReceived(BaseModel):
    """A run's outputs as suanli took them: kept as an artifact of its tenant, or not (over the
    tenant's quota or the largest artifact: the run's reason says so)."""
    kept: bool
    sha256: str | None
    size_bytes: int
