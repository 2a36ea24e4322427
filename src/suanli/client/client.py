"""The suanli client. Endpoints are declared once (`_Endpoints`) and sent either synchronously
(`Client`) or asynchronously (`AsyncClient`)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
CHUNK = 1 << 20


class ApiError(Exception):
    """An error answer from the server (status >= 400), or the server could not be reached.
    `retry_after_s`: what a 503 or 429 asked to wait before trying again (its `Retry-After`
    header), else None. After a 503 (`unavailable`: the server's database cannot be reached, say
    while it restarts) a read may simply be tried again; see docs/api.md for a submission."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 detail: Any = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.detail = detail
        self.retry_after_s = retry_after_s

    @property
    def unavailable(self) -> bool:
        """The server (or a proxy before it) cannot serve just now: try again in a moment."""
        return self.status == 503

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status})" if self.status else self.message


def _raise_for(resp: httpx.Response) -> Any:
    if resp.status_code < 400:
        if resp.headers.get("content-type", "").startswith("text/csv"):
            return resp.text  # an export (…/settlements.csv)
        return resp.json() if resp.content else None
    try:
        data = resp.json()
    except ValueError:
        # Not the API's answer (a proxy's HTML page, say): its status, not its markup.
        text = resp.text.strip()
        html = "html" in resp.headers.get("content-type", "") or text.startswith("<")
        data = {"error": resp.reason_phrase if html or not text else text[:500]}
    if not isinstance(data, dict):
        data = {"error": str(data)}
    raise ApiError(resp.status_code, str(data.get("error") or data.get("detail")),
                   data.get("field"), data.get("detail"),
                   _retry_after(resp.headers.get("retry-after")))


def _retry_after(value: str | None) -> float | None:
    """A `Retry-After` of seconds (an HTTP date, which suanli never sends, counts as absent)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 86400 else None


def _seg(value: object) -> str:
    """One path segment from a caller's value: an id as a whole number, text quoted whole. Never
    a value that would change the endpoint called: a `..` is removed with the segment before it
    by URL normalisation (`delete_artifact("../tokens/7")` would revoke token 7)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value not in ("", ".", ".."):
        return quote(value, safe="")
    raise ApiError(422, f"{value!r} is not an id or a name")


def _clean(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {k: v for k, v in params.items() if v is not None}


class _Endpoints:
    """Every API call, once. `_call` returns the decoded JSON (or an awaitable of it)."""

    def _call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
              json: Any = None, headers: Mapping[str, str] | None = None) -> Any:
        raise NotImplementedError

    # platform
    def index(self) -> Any:
        """The API's index: version and this platform's `network_id` (no token needed)."""
        return self._call("GET", "/api/v1")

    def health(self) -> Any:
        return self._call("GET", "/api/v1/health")

    def me(self) -> Any:
        return self._call("GET", "/api/v1/users/me")

    def capacity(self) -> Any:
        return self._call("GET", "/api/v1/capacity")

    def control_plane(self) -> Any:
        """Replicas, engine leader, last pass and centers' health (platform admin)."""
        return self._call("GET", "/api/v1/control-plane")

    # peer platforms (federation)
    def invite_peer(self, name: str, credit_limit_fen: int = 0) -> Any:
        """An account here for the peer platform `name`, and its join token (shown once)."""
        return self._call("POST", "/api/v1/peers/invitations",
                          json={"name": name, "credit_limit_fen": credit_limit_fen})

    def add_peer(self, name: str, url: str, token: str, *, report: bool = False,
                 margin_bp: int = 0) -> Any:
        """Borrow from the peer platform at `url` with the token it invited us with."""
        return self._call("POST", "/api/v1/peers", json={
            "name": name, "url": url, "token": token, "report": report, "margin_bp": margin_bp})

    def peer_hello(self, network_id: str) -> Any:
        """Tell the platform we borrow from who we are (as our platform account there)."""
        return self._call("POST", "/api/v1/peers/hello", json={"network_id": network_id})

    def peer_report(self, body: Mapping[str, Any]) -> Any:
        """Report to our parent node (as our platform account there)."""
        return self._call("POST", "/api/v1/peers/report", json=dict(body))

    def network(self) -> Any:
        """This node and its member nodes' last reports."""
        return self._call("GET", "/api/v1/network")

    def list_peers(self, *, limit: int = 1000, offset: int = 0) -> Any:
        """A page ({items, total, limit, offset}), as every list."""
        return self._call("GET", "/api/v1/peers", params={"limit": limit, "offset": offset})

    def get_peer(self, name: str) -> Any:
        return self._call("GET", f"/api/v1/peers/{_seg(name)}")

    def discover_peer(self, name: str) -> Any:
        return self._call("POST", f"/api/v1/peers/{_seg(name)}/discover")

    def reconcile_peer(self, name: str, month: str) -> Any:
        """Our statement of what we borrowed from the peer in `month` against its own."""
        return self._call("GET", f"/api/v1/peers/{_seg(name)}/reconcile",
                          params={"month": month})

    def remove_peer(self, name: str) -> Any:
        return self._call("DELETE", f"/api/v1/peers/{_seg(name)}")

    # centers
    def list_centers(self, *, limit: int = 1000, offset: int = 0) -> Any:
        return self._call("GET", "/api/v1/centers", params={"limit": limit, "offset": offset})

    def get_center(self, center_id: int) -> Any:
        return self._call("GET", f"/api/v1/centers/{_seg(center_id)}")

    def create_center(self, body: Mapping[str, Any]) -> Any:
        return self._call("POST", "/api/v1/centers", json=dict(body))

    def discover_pools(self, connector: str, config: Mapping[str, Any]) -> Any:
        return self._call("POST", "/api/v1/centers/discover",
                          json={"connector": connector, "connector_config": dict(config)})

    def set_center_status(self, center_id: int, status: str, reason: str = "") -> Any:
        return self._call("POST", f"/api/v1/centers/{_seg(center_id)}/status",
                          json={"status": status, "reason": reason})

    def center_pools(self, center_id: int, *, limit: int = 1000, offset: int = 0) -> Any:
        return self._call("GET", f"/api/v1/centers/{_seg(center_id)}/pools",
                          params={"limit": limit, "offset": offset})

    def add_pool(self, center_id: int, body: Mapping[str, Any]) -> Any:
        return self._call("POST", f"/api/v1/centers/{_seg(center_id)}/pools", json=dict(body))

    def list_pools(self, *, limit: int = 1000, offset: int = 0) -> Any:
        return self._call("GET", "/api/v1/pools", params={"limit": limit, "offset": offset})

    # tenants, users, tokens
    def list_tenants(self, *, limit: int = 1000, offset: int = 0) -> Any:
        return self._call("GET", "/api/v1/tenants", params={"limit": limit, "offset": offset})

    def create_tenant(self, body: Mapping[str, Any]) -> Any:
        return self._call("POST", "/api/v1/tenants", json=dict(body))

    def get_tenant(self, tenant_id: int) -> Any:
        return self._call("GET", f"/api/v1/tenants/{_seg(tenant_id)}")

    def set_peer_rule(self, tenant_id: int, earlier_by_s: int | None) -> Any:
        return self._call("PUT", f"/api/v1/tenants/{_seg(tenant_id)}/peer-rule",
                          json={"earlier_by_s": earlier_by_s})

    def tenant_quotas(self, tenant_id: int) -> Any:
        return self._call("GET", f"/api/v1/tenants/{_seg(tenant_id)}/quotas")

    def set_quota(self, tenant_id: int, device_kind: str, max_units: int | None) -> Any:
        path = f"/api/v1/tenants/{_seg(tenant_id)}/quotas/{_seg(device_kind)}"
        if max_units is None:
            return self._call("DELETE", path)
        return self._call("PUT", path, json={"max_units": max_units})

    def list_users(self, *, limit: int = 1000, offset: int = 0) -> Any:
        return self._call("GET", "/api/v1/users", params={"limit": limit, "offset": offset})

    def create_user(self, body: Mapping[str, Any]) -> Any:
        return self._call("POST", "/api/v1/users", json=dict(body))

    def list_tokens(self, *, limit: int = 1000, offset: int = 0) -> Any:
        return self._call("GET", "/api/v1/tokens", params={"limit": limit, "offset": offset})

    def set_user_disabled(self, user_id: int, disabled: bool, reason: str = "") -> Any:
        verb = "disable" if disabled else "enable"
        return self._call("POST", f"/api/v1/users/{_seg(user_id)}/{_seg(verb)}", json={"reason": reason})

    def create_token(self, name: str = "", user_id: int | None = None,
                     expires_in_s: int | None = None) -> Any:
        return self._call("POST", "/api/v1/tokens", json=_clean(
            {"name": name, "user_id": user_id, "expires_in_s": expires_in_s}))

    def revoke_token(self, token_id: int) -> Any:
        return self._call("DELETE", f"/api/v1/tokens/{_seg(token_id)}")

    # jobs
    def submit_job(self, body: Mapping[str, Any], *, idempotency_key: str | None = None) -> Any:
        """Queue a job. With `idempotency_key` (a UUID per submission, say) a retry of the same
        call after a lost answer (a 503, a dropped connection) gets the job the first one
        queued, never a second one."""
        return self._call("POST", "/api/v1/jobs", json=dict(body), headers=(
            {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None))

    def submit_dag(self, body: Mapping[str, Any]) -> Any:
        return self._call("POST", "/api/v1/dags", json=dict(body))

    def list_dags(self, *, limit: int = 50, offset: int = 0) -> Any:
        return self._call("GET", "/api/v1/dags", params={"limit": limit, "offset": offset})

    def get_dag(self, dag_id: int) -> Any:
        return self._call("GET", f"/api/v1/dags/{_seg(dag_id)}")

    def cancel_dag(self, dag_id: int) -> Any:
        return self._call("POST", f"/api/v1/dags/{_seg(dag_id)}/cancel")

    def tenant_account(self, tenant_id: int) -> Any:
        return self._call("GET", f"/api/v1/ledger/tenants/{_seg(tenant_id)}")

    def deposit(self, tenant_id: int, amount_fen: int, reference: str) -> Any:
        return self._call("POST", "/api/v1/ledger/deposits",
                          json={"tenant_id": tenant_id, "amount_fen": amount_fen, "reference": reference})

    def trial_balance(self) -> Any:
        return self._call("GET", "/api/v1/ledger/trial-balance")

    def set_credit_limit(self, tenant_id: int, credit_limit_fen: int) -> Any:
        return self._call("PUT", f"/api/v1/tenants/{_seg(tenant_id)}/credit-limit",
                          json={"credit_limit_fen": credit_limit_fen})

    def list_prices(self, pool_id: int, *, limit: int = 1000, offset: int = 0) -> Any:
        """A page ({items, total, limit, offset}) of the pool's price versions."""
        return self._call("GET", f"/api/v1/pools/{_seg(pool_id)}/prices",
                          params={"limit": limit, "offset": offset})

    def set_price(self, pool_id: int, body: Mapping[str, Any]) -> Any:
        return self._call("POST", f"/api/v1/pools/{_seg(pool_id)}/prices", json=dict(body))

    # vouchers (算力券)
    def list_programmes(self, *, limit: int = 1000, offset: int = 0) -> Any:
        return self._call("GET", "/api/v1/voucher-programmes", params={"limit": limit, "offset": offset})

    def get_programme(self, programme_id: int) -> Any:
        return self._call("GET", f"/api/v1/voucher-programmes/{_seg(programme_id)}")

    def create_programme(self, body: Mapping[str, Any]) -> Any:
        return self._call("POST", "/api/v1/voucher-programmes", json=dict(body))

    def update_rules(self, programme_id: int, rules: Mapping[str, Any]) -> Any:
        return self._call("PUT", f"/api/v1/voucher-programmes/{_seg(programme_id)}/rules",
                          json={"rules": dict(rules)})

    def list_applications(self, *, programme_id: int | None = None, state: str | None = None,
                          tenant_id: int | None = None, limit: int = 1000, offset: int = 0) -> Any:
        return self._call("GET", "/api/v1/voucher-applications", params=_clean(
            {"programme_id": programme_id, "state": state, "tenant_id": tenant_id, "limit": limit,
             "offset": offset}))

    def apply_voucher(self, body: Mapping[str, Any]) -> Any:
        return self._call("POST", "/api/v1/voucher-applications", json=dict(body))

    def review_application(self, application_id: int, body: Mapping[str, Any]) -> Any:
        return self._call("POST", f"/api/v1/voucher-applications/{_seg(application_id)}/review",
                          json=dict(body))

    def list_grants(self, *, programme_id: int | None = None, tenant_id: int | None = None,
                    limit: int = 1000, offset: int = 0) -> Any:
        return self._call("GET", "/api/v1/voucher-grants", params=_clean(
            {"programme_id": programme_id, "tenant_id": tenant_id, "limit": limit, "offset": offset}))

    def claim(self, grant_id: int, period: str) -> Any:
        return self._call("POST", f"/api/v1/voucher-grants/{_seg(grant_id)}/claims", json={"period": period})

    def list_redemptions(self, *, programme_id: int | None = None, tenant_id: int | None = None,
                         limit: int = 100, offset: int = 0) -> Any:
        return self._call("GET", "/api/v1/voucher-redemptions", params=_clean(
            {"programme_id": programme_id, "tenant_id": tenant_id, "limit": limit, "offset": offset}))

    def clawback(self, redemption_id: int, reason: str) -> Any:
        return self._call("POST", f"/api/v1/voucher-redemptions/{_seg(redemption_id)}/clawback",
                          json={"reason": reason})

    def freeze(self, tenant_id: int, reason: str) -> Any:
        return self._call("POST", f"/api/v1/tenants/{_seg(tenant_id)}/freeze", json={"reason": reason})

    def unfreeze(self, tenant_id: int) -> Any:
        return self._call("POST", f"/api/v1/tenants/{_seg(tenant_id)}/unfreeze")

    def declare_related(self, tenant_id: int, center_id: int, relation: str) -> Any:
        return self._call("POST", f"/api/v1/tenants/{_seg(tenant_id)}/related-parties",
                          json={"center_id": center_id, "relation": relation})

    def list_related_parties(self, tenant_id: int, *, limit: int = 1000, offset: int = 0) -> Any:
        """The centers the tenant declared related (their runs are never subsidised)."""
        return self._call("GET", f"/api/v1/tenants/{_seg(tenant_id)}/related-parties",
                          params={"limit": limit, "offset": offset})

    def voucher_report(self, programme_id: int, by: str = "tenant", fmt: str = "json") -> Any:
        """The report (JSON), or its rows as CSV text (`fmt="csv"`)."""
        return self._call("GET", "/api/v1/voucher-reports" + (".csv" if fmt == "csv" else ""),
                          params={"programme_id": programme_id, "by": by})

    # settlement and audit
    def settle(self, month: str, preview: bool = False) -> Any:
        return self._call("POST", "/api/v1/settlements", json={"month": month, "preview": preview})

    def statements(self, month: str, *, party: str | None = None, fmt: str = "json") -> Any:
        """A month's statements (JSON), or as CSV text (`fmt="csv"`)."""
        return self._call("GET", "/api/v1/settlements" + (".csv" if fmt == "csv" else ""),
                          params=_clean({"month": month, "party": party}))

    def invoices(self, month: str, fmt: str = "json") -> Any:
        return self._call("GET", "/api/v1/invoices" + (".csv" if fmt == "csv" else ""),
                          params={"month": month})

    def get_invoice(self, month: str, tenant_id: int) -> Any:
        """The tenant's invoice (its statement) of a settled month."""
        return self._call("GET", f"/api/v1/invoices/{_seg(month)}/{_seg(tenant_id)}")

    def audit_verify(self) -> Any:
        return self._call("GET", "/api/v1/audit/verify")

    def audit_seal(self, proof: str) -> Any:
        """Seal the log again; `proof`: `services.audit.reseal_proof(key, head_hash)`."""
        return self._call("POST", "/api/v1/audit/seal", json={"proof": proof})

    def audit_log(self, *, limit: int = 50, offset: int = 0) -> Any:
        return self._call("GET", "/api/v1/audit", params={"limit": limit, "offset": offset})

    def estimate_job(self, body: Mapping[str, Any]) -> Any:
        return self._call("POST", "/api/v1/jobs/estimate", json=dict(body))

    def list_jobs(self, *, state: str | None = None, tenant_id: int | None = None,
                  name: str | None = None, limit: int = 50, offset: int = 0) -> Any:
        return self._call("GET", "/api/v1/jobs", params=_clean(
            {"state": state, "tenant_id": tenant_id, "name": name, "limit": limit,
             "offset": offset}))

    def get_job(self, job_id: int) -> Any:
        return self._call("GET", f"/api/v1/jobs/{_seg(job_id)}")

    def resubmit_job(self, job_id: int) -> Any:
        return self._call("POST", f"/api/v1/jobs/{_seg(job_id)}/resubmit")

    def get_array(self, array_id: int) -> Any:
        return self._call("GET", f"/api/v1/arrays/{_seg(array_id)}")

    def cancel_job(self, job_id: int) -> Any:
        return self._call("POST", f"/api/v1/jobs/{_seg(job_id)}/cancel")

    def job_logs(self, job_id: int, *, stream: str = "stdout", offset: int = 0,
                 run_id: int | None = None) -> Any:
        return self._call("GET", f"/api/v1/jobs/{_seg(job_id)}/logs", params=_clean(
            {"stream": stream, "offset": offset, "run_id": run_id}))

    def job_placement(self, job_id: int) -> Any:
        return self._call("GET", f"/api/v1/jobs/{_seg(job_id)}/placement")

    def usage(self, *, job_id: int | None = None, tenant_id: int | None = None,
              center_id: int | None = None, since: datetime | None = None,
              until: datetime | None = None, limit: int = 100, offset: int = 0) -> Any:
        """Metered runs that ended in [since, until) (aware datetimes, any zone)."""
        return self._call("GET", "/api/v1/usage", params=_clean(
            {"job_id": job_id, "tenant_id": tenant_id, "center_id": center_id,
             "since": since.isoformat() if since else None,
             "until": until.isoformat() if until else None, "limit": limit, "offset": offset}))

    def bills(self, months: int = 12) -> Any:
        """The caller's own statements month by month (a tenant's invoices, an operator's
        center's), months not settled yet computed so far (`settled: false`)."""
        return self._call("GET", "/api/v1/bills", params={"months": months})

    # artifacts and datasets (the byte transfers are on Client: upload_artifact, ...)
    def list_artifacts(self, *, kind: str | None = None, tenant_id: int | None = None,
                       job_id: int | None = None, limit: int = 50, offset: int = 0) -> Any:
        return self._call("GET", "/api/v1/artifacts", params=_clean(
            {"kind": kind, "tenant_id": tenant_id, "job_id": job_id, "limit": limit,
             "offset": offset}))

    def delete_artifact(self, sha256: str) -> Any:
        return self._call("DELETE", f"/api/v1/artifacts/{_seg(sha256)}")

    def storage_quota(self, tenant_id: int) -> Any:
        return self._call("GET", f"/api/v1/tenants/{_seg(tenant_id)}/storage-quota")

    def set_storage_quota(self, tenant_id: int, *, quota_bytes: int | None,
                          quota_count: int | None) -> Any:
        return self._call("PUT", f"/api/v1/tenants/{_seg(tenant_id)}/storage-quota",
                          json={"bytes": quota_bytes, "count": quota_count})

    def add_dataset(self, body: Mapping[str, Any]) -> Any:
        return self._call("POST", "/api/v1/datasets", json=_clean(body))

    def list_datasets(self, *, tenant_id: int | None = None, limit: int = 50,
                      offset: int = 0) -> Any:
        return self._call("GET", "/api/v1/datasets", params=_clean(
            {"tenant_id": tenant_id, "limit": limit, "offset": offset}))

    def delete_dataset(self, name: str) -> Any:
        return self._call("DELETE", f"/api/v1/datasets/{_seg(name)}")


def _settings(url: str | None, token: str | None) -> tuple[str, dict[str, str]]:
    url = (url or os.environ.get("SUANLI_URL") or DEFAULT_URL).rstrip("/")
    token = token if token is not None else os.environ.get("SUANLI_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return url, headers


class Client(_Endpoints):
    """Synchronous client: `Client(url, token).submit_job({...})`."""

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        base, headers = _settings(url, token)
        self.url = base
        self._http = httpx.Client(base_url=base, headers=headers, timeout=timeout,
                                  transport=transport)

    def _call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
              json: Any = None, headers: Mapping[str, str] | None = None) -> Any:
        try:
            resp = self._http.request(method, path, params=params, json=json, headers=headers)
        except httpx.TransportError as exc:
            raise ApiError(0, f"cannot reach suanli at {self.url}: {exc}") from exc
        return _raise_for(resp)

    # Byte transfers: streamed both ways, never whole in memory.
    def artifact_exists(self, sha256: str) -> bool:
        """Whether the caller's tenant has this content (then an upload would transfer it for
        nothing)."""
        try:
            resp = self._http.head(f"/api/v1/artifacts/{_seg(sha256)}")
        except httpx.TransportError as exc:
            raise ApiError(0, f"cannot reach suanli at {self.url}: {exc}") from exc
        if resp.status_code == 404:
            return False
        _raise_for(resp)
        return True

    def upload_artifact(self, fileobj: IO[bytes], *, sha256: str, size: int, name: str = "",
                        kind: str = "upload") -> dict[str, Any]:
        """Stream `size` bytes from `fileobj` as an artifact whose SHA-256 is `sha256` (the
        server checks both). Returns the artifact; `created` is False when it was there."""
        def chunks() -> Iterator[bytes]:
            left = size
            while left > 0 and (chunk := fileobj.read(min(CHUNK, left))):
                left -= len(chunk)
                yield chunk
            if left > 0:  # the server would wait for the rest: stop the request instead
                raise ApiError(422, f"the content ended {left:,} bytes before its announced "
                               "size (did it change while uploading?)", "Content-Length")

        headers = {"X-Content-SHA256": sha256, "Content-Length": str(size),
                   "Content-Type": "application/octet-stream"}
        try:
            resp = self._http.put("/api/v1/artifacts", params={"name": name, "kind": kind},
                                  content=chunks(), headers=headers,
                                  timeout=httpx.Timeout(self._http.timeout.read, write=None))
        except httpx.TransportError as exc:
            raise ApiError(0, f"upload to {self.url} failed: {exc}") from exc
        data: dict[str, Any] = _raise_for(resp)
        data["created"] = resp.status_code == 201
        return data

    def _download(self, path: str, out: IO[bytes] | str | Path,
                  max_bytes: int | None = None) -> int:
        if isinstance(out, str | Path):
            with open(out, "wb") as fh:
                return self._download(path, fh, max_bytes)
        written = 0
        try:
            with self._http.stream("GET", path) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    _raise_for(resp)
                for chunk in resp.iter_bytes(CHUNK):
                    written += len(chunk)
                    if max_bytes is not None and written > max_bytes:
                        raise ApiError(413, f"{path}: more than {max_bytes:,} bytes")
                    out.write(chunk)
        except httpx.TransportError as exc:
            raise ApiError(0, f"download from {self.url} failed: {exc}") from exc
        return written

    def download_artifact(self, sha256: str, out: IO[bytes] | str | Path) -> int:
        """Write the artifact's bytes to `out` (a binary file or a path); returns the count."""
        return self._download(f"/api/v1/artifacts/{_seg(sha256)}", out)

    def job_outputs(self, job_id: int, out: IO[bytes] | str | Path,
                    max_bytes: int | None = None) -> int:
        """Write the job's packed outputs (a tar) to `out`; returns the bytes written (more than
        `max_bytes`: ApiError 413, the download stopped)."""
        return self._download(f"/api/v1/jobs/{_seg(job_id)}/outputs", out, max_bytes)

    def has_outputs(self, job_id: int) -> bool:
        """Whether the job's outputs are stored (its GET answers; nothing is downloaded)."""
        try:
            with self._http.stream("GET", f"/api/v1/jobs/{_seg(job_id)}/outputs") as resp:
                if resp.status_code == 404:
                    return False
                if resp.status_code >= 400:
                    resp.read()
                    _raise_for(resp)
                return True
        except httpx.TransportError as exc:
            raise ApiError(0, f"cannot reach suanli at {self.url}: {exc}") from exc

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Endpoints):
    """Asynchronous client: `await AsyncClient(url, token).submit_job({...})`."""

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout: float = 30.0, transport: httpx.AsyncBaseTransport | None = None,
                 limits: httpx.Limits | None = None) -> None:
        base, headers = _settings(url, token)
        self.url = base
        self._http = httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout,
                                       transport=transport,
                                       limits=limits or httpx.Limits(max_connections=100))

    async def _call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                    json: Any = None, headers: Mapping[str, str] | None = None) -> Any:
        try:
            resp = await self._http.request(method, path, params=params, json=json,
                                                 headers=headers)
        except httpx.TransportError as exc:
            raise ApiError(0, f"cannot reach suanli at {self.url}: {exc}") from exc
        return _raise_for(resp)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
