"""The portal's routes, one section per role: sign-in; the tenant's jobs (submit with an estimate,
the list, a job's page with its logs, runs, placement and history) and account (money, bills,
vouchers); the reviewer's queue; the auditor's log and claw-back; the center operator's center;
the platform admin's city dashboard. Each page calls the services the API calls."""

from __future__ import annotations

import math
import secrets
import shlex
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ..domain.enums import DeviceKind, Policy, Role
from ..domain.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    SuanliError,
    TooManyAttempts,
    Unauthenticated,
)
from ..domain.jobstate import JobState
from ..domain.money import parse_yuan, yuan
from ..domain.timefmt import display_zone, duration, local_time
from ..services import (
    artifacts,
    audit,
    auth,
    centers,
    jobs,
    ledger,
    peer_report,
    settlement,
    signin,
    tenants,
    vouchers,
)
from ..services.auth import Principal
from ..services.context import Platform
from ..services.dashboard import center_load, city_dashboard
from ..services.jobs import JobInput
from . import docs
from . import session as sess
from .i18n import label, t
from .reasons import policy_name, reason, reasons

HERE = Path(__file__).parent
# The Content-Security-Policy of every page: scripts only from suanli itself (no inline script).
# Inline *styles* are allowed: ECharts and htmx set element styles.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
E = TypeVar("E", bound=StrEnum)  # a form field that is one of an enum's values
HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
           "Cache-Control": "no-store"}

DASHBOARD_TTL_S = 10.0
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.globals["yuan"] = yuan
templates.env.globals["duration"] = duration

# How much of a log the job page shows (the end of it; the "full log" link has the rest).
LOG_TAIL_BYTES = 64 * 1024
# How far the page's first look at a log reads on to find its end (then it follows from there).
LOG_TAIL_SCAN_CHUNKS = 64


def plain_number(value: float | None, digits: int = 3) -> str:
    """A figure with `digits` significant digits and never in scientific notation:
    7.78e-06 → 0.00000778, 1234.5 → 1234.5 (whole digits are never cut)."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    text = format(Decimal(f"{value:.{digits}g}"), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


templates.env.globals["plain_number"] = plain_number
templates.env.globals["shell_join"] = shlex.join  # a command as one would type it, quotes and all


class _Static(StaticFiles):
    """The portal's files; the vendored packages (fixed by web/package-lock.json) are cached a day.
    `vendor/test/` (axe-core) is there only for the browser tests: not found unless `test_assets`."""

    def __init__(self, *, directory: str, test_assets: bool = False) -> None:
        super().__init__(directory=directory)
        self.test_assets = test_assets

    def lookup_path(self, path: str) -> tuple[str, Any]:
        if not self.test_assets and path.replace("\\", "/").lstrip("/").startswith("vendor/test"):
            return "", None
        return super().lookup_path(path)

    def file_response(self, full_path: Any, stat_result: Any, scope: Any, status_code: int = 200) -> Response:
        resp = super().file_response(full_path, stat_result, scope, status_code)
        if "/vendor/" in str(full_path):
            resp.headers["Cache-Control"] = "public, max-age=86400"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp


def install(app: FastAPI, platform: Platform) -> None:
    """Mount the portal's pages and its static files on the API's app."""
    app.mount("/static", _Static(directory=str(HERE / "static"),
                                 test_assets=platform.settings.web_test_assets), name="static")
    app.include_router(build_router(platform))
    app.include_router(docs.build_router(app.title, app.openapi_url or "/openapi.json"))


def unavailable_page(request: Request, retry_after_s: int) -> HTMLResponse:
    """The page shown while the database cannot be reached (HTTP 503, `Retry-After`): no user
    (who is signed in is in the database too), nothing of the error itself."""
    lang = sess.language(request)
    resp = templates.TemplateResponse(request, "error.html", {
        "who": None, "lang": lang, "t": lambda key: t(key, lang), "csrf": "",
        "path": request.url.path, "title": "unavailable",
        "message": t("db_unavailable", lang)}, status_code=503)
    resp.headers.update(HEADERS)
    resp.headers["Retry-After"] = str(retry_after_s)
    return resp


def build_router(p: Platform) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    secret = sess.server_secret(p.home)
    zone = display_zone()  # $SUANLI_TZ, Beijing time by default: a bad name stops the start

    def page(request: Request, name: str, who: Principal | None, status: int = 200,
             **ctx: Any) -> HTMLResponse:
        lang = sess.language(request)
        token = sess.session_token(request)
        resp = templates.TemplateResponse(request, name, {
            "who": who, "lang": lang, "t": lambda key: t(key, lang),
            "label": lambda value: label(value, lang),
            "when": lambda at, seconds=True: local_time(at, zone, seconds=seconds),
            "reason": lambda text: reason(text, lang, zone),
            "reasons": lambda items: reasons(items, lang, zone),
            "policy_name": lambda value: policy_name(value, lang),
            "csrf": sess.csrf_for(secret, token) if token and who else "",
            "path": request.url.path, **ctx}, status_code=status)
        resp.headers.update(HEADERS)
        return resp

    def problem(request: Request, who: Principal | None, exc: SuanliError) -> HTMLResponse:
        title = {404: "not_found", 403: "forbidden"}.get(exc.status, "error")
        return page(request, "error.html", who, status=exc.status, title=title,
                    message=reason(exc.message, sess.language(request), zone))

    def to_login(request: Request) -> RedirectResponse:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)

    def view(request: Request, template: str, build: Callable[[Principal], dict[str, Any]]) -> Response:
        """A page for the signed-in user: `build` calls the services; their refusals (not found,
        not allowed, bad input) become the error page."""
        who = sess.current_user(p, request)
        if who is None:
            return to_login(request)
        try:
            ctx = build(who)
        except SuanliError as exc:
            return problem(request, who, exc)
        return page(request, template, who, **ctx)

    def check_csrf(request: Request, given: str | None) -> bool:
        token = sess.session_token(request)
        return bool(token) and sess.csrf_ok(secret, token or "", given)

    def posted_by(request: Request, csrf: str) -> Principal | Response:
        """The signed-in user of a form post with its CSRF token; else the answer to send."""
        who = sess.current_user(p, request)
        if who is None:
            return to_login(request)
        if not check_csrf(request, csrf):
            return page(request, "error.html", who, status=403, title="forbidden",
                        message=t("bad_csrf", sess.language(request)))
        return who

    def refused(request: Request, who: Principal, exc: SuanliError, template: str,
                build: Callable[[Principal], dict[str, Any]], form: dict[str, Any],
                fields: dict[str, str], **extra: Any) -> Response:
        """A form a service refused, shown again on its page: what was typed (`form`), the error
        in the page's language, and the field it names (a service's field name, mapped to the
        form's by `fields`) to mark invalid."""
        try:
            ctx = build(who)
        except SuanliError as again:
            return problem(request, who, again)
        field = str(getattr(exc, "field", "") or "").split(".")[-1]
        ctx.update(form=form, error=reason(exc.message, sess.language(request), zone),
                   error_field=fields.get(field, field), **extra)
        return page(request, template, who, status=exc.status, **ctx)

    def acted(request: Request, csrf: str, action: Callable[[Principal], object], then: str) -> Response:
        """A form post that does one thing: the signed-in user, with the form's CSRF token, calls
        a service; its refusals (bad input included) are the error page, else on to `then`."""
        who = posted_by(request, csrf)
        if isinstance(who, Response):
            return who
        try:
            action(who)
        except SuanliError as exc:
            return problem(request, who, exc)
        return RedirectResponse(then, status_code=303)

    # -- sign-in ------------------------------------------------------------------------------
    def login_page(request: Request, next: str, status: int = 200, error: str = "",
                   headers: dict[str, str] | None = None) -> Response:
        nonce = secrets.token_urlsafe(24)
        form = page(request, "login.html", None, status=status, login_csrf=nonce,
                    next=_local(next), error=error)
        form.headers.update(headers or {})
        form.set_cookie(sess.LOGIN_CSRF_COOKIE, nonce, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
        return form

    @router.get("/login")
    def login_form(request: Request, next: str = "/") -> Response:
        return login_page(request, next)

    @router.post("/login")
    def login(request: Request, csrf: str = Form(""), username: str = Form(""),
              password: str = Form(""), token: str = Form(""), next: str = Form("/")) -> Response:
        lang = sess.language(request)
        expected = request.cookies.get(sess.LOGIN_CSRF_COOKIE, "")
        if not expected or not secrets.compare_digest(expected, csrf):
            return page(request, "error.html", None, status=403, title="forbidden",
                        message=t("bad_csrf", lang))
        # The client's address: the peer, or what a trusted proxy says (api/proxy.py).
        address = request.client.host if request.client else "unknown"
        try:
            if token.strip():
                who = signin.with_token(p, token.strip(), address)
            else:
                who = signin.with_password(p, username.strip(), password, address)
        except TooManyAttempts as exc:
            return login_page(request, next, 429,
                              t("too_many_sign_ins", lang).format(n=exc.retry_after_s),
                              {"Retry-After": str(exc.retry_after_s)})
        except Unauthenticated:
            return login_page(request, next, 401, t("bad_login", lang))
        # A session is its own token (sign-out revokes it, not the token that was pasted); one
        # from a pasted token ends when that one does.
        _tok, secret_token = auth.issue_token(p, who.user_id, name="web session",
                                              parent_id=who.token_id)
        resp = RedirectResponse(_local(next) if next != "/" else _home(who), status_code=303)
        resp.set_cookie(sess.SESSION_COOKIE, secret_token, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")
        resp.delete_cookie(sess.LOGIN_CSRF_COOKIE)
        return resp

    @router.post("/logout")
    def logout(request: Request, csrf: str = Form("")) -> Response:
        token = sess.session_token(request)
        if not check_csrf(request, csrf):
            return page(request, "error.html", None, status=403, title="forbidden",
                        message=t("bad_csrf", sess.language(request)))
        auth.revoke_secret(p, token or "")
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(sess.SESSION_COOKIE)
        return resp

    @router.get("/lang/{lang}")
    def switch_language(lang: str, next: str = "/") -> Response:
        resp = RedirectResponse(_local(next), status_code=303)
        resp.set_cookie(sess.LANG_COOKIE, lang if lang in ("zh", "en") else "zh", samesite="lax")
        return resp

    @router.get("/")
    def home(request: Request) -> Response:
        who = sess.current_user(p, request)
        return RedirectResponse(_home(who) if who else "/login", status_code=303)

    # -- tenant: jobs -------------------------------------------------------------------------
    def listed(who: Principal, offset: int) -> dict[str, Any]:
        """A page of the caller's jobs; `live` while one of them has not ended. Who sees other
        tenants' jobs (the platform admin) sees whose they are; only tenants' users submit."""
        listing = jobs.list_jobs(p, who, limit=50, offset=max(0, offset))
        live = any(not JobState(j.state).is_terminal for j in listing.items)
        names = ({tn.id: tn.name for tn in tenants.list_tenants(p, who)}
                 if who.role is Role.PLATFORM_ADMIN else None)
        return {"listing": listing, "live": live, "offset": max(0, offset), "tenant_names": names,
                "may_submit": who.role.is_tenant}

    @router.get("/jobs")
    def job_list(request: Request, offset: int = 0) -> Response:
        return view(request, "jobs.html", lambda who: {
            **listed(who, offset), "devices": list(DeviceKind), "policies": list(Policy),
            "form": {}, "error": None})

    @router.get("/jobs/rows")
    def job_rows(request: Request, offset: int = 0) -> Response:
        """The list's rows again (htmx polls them while a job shown has not ended)."""
        if sess.current_user(p, request) is None:
            return Response(status_code=401)
        return view(request, "_job_rows.html", lambda who: listed(who, offset))

    @router.post("/jobs")
    def submit(request: Request, csrf: str = Form(""), name: str = Form(""),
               command: str = Form(""), device: str = Form("cpu"), units: int = Form(1),
               walltime_s: int = Form(600), policy: str = Form("balanced"),
               budget_yuan: str = Form("")) -> Response:
        who = posted_by(request, csrf)
        if isinstance(who, Response):
            return who
        form = {"name": name, "command": command, "device": device, "units": units,
                "walltime_s": walltime_s, "policy": policy, "budget_yuan": budget_yuan}
        try:
            job = jobs.submit_job(p, who, _job_input(form))
        except Forbidden as exc:  # not a tenant's user: there is no form to show it in
            return problem(request, who, exc)
        except SuanliError as exc:
            return refused(request, who, exc, "jobs.html", lambda w: {
                **listed(w, 0), "devices": list(DeviceKind), "policies": list(Policy)},
                form, FORM_FIELDS)
        request.app.state.engine.wake()
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    @router.post("/jobs/estimate")
    def estimate(request: Request, name: str = Form("job"), command: str = Form("true"),
                 device: str = Form("cpu"), units: int = Form(1), walltime_s: int = Form(600),
                 policy: str = Form("balanced"), budget_yuan: str = Form("")) -> Response:
        """An htmx fragment: where the job would go now, its cost and start (nothing queued)."""
        who = sess.current_user(p, request)
        if who is None:
            return Response(status_code=401)
        if not check_csrf(request, request.headers.get(sess.CSRF_HEADER)):
            return Response(status_code=403)
        form = {"name": name or "job", "command": command or "true", "device": device,
                "units": units, "walltime_s": walltime_s, "policy": policy,
                "budget_yuan": budget_yuan}
        error_pools: list[dict[str, Any]] = []
        try:
            exp = jobs.estimate(p, who, _job_input(form))
            error = None
        except SuanliError as exc:
            exp, error = None, exc.message
            if isinstance(exc.detail, list):  # an infeasible job: what each pool lacks
                error_pools = [d for d in exc.detail if isinstance(d, dict) and d.get("reasons")][:8]
        chosen = next((c for c in (exp or {}).get("candidates", []) if c.get("chosen")), None)
        start = (exp or {}).get("estimated_start")
        wait_min = None
        if start:
            wait_s = (datetime.fromisoformat(start) - p.clock.now()).total_seconds()
            wait_min = max(0, math.ceil(wait_s / 60)) if wait_s > 5 else 0
        return page(request, "estimate.html", who, exp=exp, chosen=chosen, error=error,
                    error_pools=error_pools, start=start, wait_min=wait_min,
                    start_at=local_time(datetime.fromisoformat(start), zone, seconds=False) if start else "")

    @router.get("/jobs/{job_id}")
    def job_page(request: Request, job_id: int) -> Response:
        def build(who: Principal) -> dict[str, Any]:
            job = jobs.get_job(p, who, job_id)
            current = jobs.placement_explanation(p, who, job_id).get("current") or {}
            usage = {u.run_id: u for u in _usage(p, who, job_id)}
            where = {pl.id: f"{c.slug}/{pl.name}" for c in centers.list_centers(p, who) for pl in c.pools}
            show_logs = jobs.may_read_output(who)
            try:
                outputs = artifacts.job_outputs(p, who, job_id) if who.role.is_tenant else None
            except NotFound:
                outputs = None
            return {"job": job, "history": jobs.job_history(p, who, job_id),
                    "show_logs": show_logs, "outputs": outputs, "tail_kb": LOG_TAIL_BYTES // 1024,
                    "may_resubmit": who.role.is_tenant,
                    "candidates": current.get("candidates") or [], "message": current.get("message"),
                    "runs": jobs.job_runs(p, who, job_id), "usage": usage, "where": where,
                    "cost": sum(u.amount_fen for u in usage.values())}
        return view(request, "job.html", build)

    @router.get("/jobs/{job_id}/logs")
    def job_log_chunk(request: Request, job_id: int, offset: int = 0, stream: str = "stdout",
                      tail: int = 0) -> Response:
        """Plain text from `offset`; X-Next-Offset and X-Done say where to go on. With `tail`
        (and offset 0), only the log's last `tail` bytes (X-Skipped: how many came before)."""
        who = sess.current_user(p, request)
        if who is None:
            return Response(status_code=401)
        try:
            chunk = jobs.job_logs(p, who, job_id, stream=stream, offset=max(0, offset))
            skipped = 0
            if tail > 0 and offset <= 0:
                chunk, skipped = _log_tail(p, who, job_id, stream, chunk, min(tail, LOG_TAIL_BYTES))
        except SuanliError as exc:
            return Response(exc.message, status_code=exc.status)
        return Response(chunk.data, media_type="text/plain; charset=utf-8",
                        headers={"X-Next-Offset": str(chunk.next_offset), "X-Skipped": str(skipped),
                                 "X-Done": "1" if chunk.eof else "0", **HEADERS})

    @router.get("/jobs/{job_id}/logs/{stream}.txt")
    def job_log_full(request: Request, job_id: int, stream: str) -> Response:
        """The whole log of the job's current run as it is now, streamed chunk by chunk."""
        who = sess.current_user(p, request)
        if who is None:
            return to_login(request)
        try:
            first = jobs.job_logs(p, who, job_id, stream=stream)
        except SuanliError as exc:
            return problem(request, who, exc)

        def chunks() -> Iterator[bytes]:
            chunk = first
            while chunk.data:
                yield chunk.data.encode()
                chunk = jobs.job_logs(p, who, job_id, stream=stream, offset=chunk.next_offset,
                                      run_id=chunk.run_id)

        return StreamingResponse(chunks(), media_type="text/plain; charset=utf-8", headers={
            **HEADERS, "Content-Disposition": f'inline; filename="job-{job_id}-{stream}.txt"'})

    @router.get("/jobs/{job_id}/outputs")
    def job_outputs(request: Request, job_id: int) -> Response:
        """The job's packed outputs (a tar), as GET /api/v1/jobs/{id}/outputs gives them."""
        who = sess.current_user(p, request)
        if who is None:
            return to_login(request)
        try:
            out = artifacts.job_outputs(p, who, job_id)
        except SuanliError as exc:
            return problem(request, who, exc)
        name = f"job-{job_id}-outputs.tar"
        return StreamingResponse(
            p.blobs.iter_bytes(out.tenant_id, out.sha256), media_type="application/x-tar",
            headers={**HEADERS, "Content-Length": str(out.size),
                     "Content-Disposition": f'attachment; filename="{name}"'})

    @router.post("/jobs/{job_id}/resubmit")
    def resubmit(request: Request, job_id: int, csrf: str = Form("")) -> Response:
        """The same task again, as a new job (through every submission check): on to its page."""
        who = posted_by(request, csrf)
        if isinstance(who, Response):
            return who
        try:
            job = jobs.resubmit_job(p, who, job_id)
        except SuanliError as exc:
            return problem(request, who, exc)
        request.app.state.engine.wake()
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    @router.post("/jobs/{job_id}/cancel")
    def cancel(request: Request, job_id: int, csrf: str = Form("")) -> Response:
        def do(who: Principal) -> None:
            jobs.cancel_job(p, who, job_id, reason="cancelled in the portal")
            request.app.state.engine.wake()
        return acted(request, csrf, do, f"/jobs/{job_id}")

    # -- reviewer: the voucher application queue ----------------------------------------------
    def review_ctx(who: Principal) -> dict[str, Any]:
        who.require(Role.REVIEWER, Role.PLATFORM_ADMIN)
        apps = vouchers.list_applications(p, who)
        done = [a for a in apps if a["state"] != "pending"][-50:]
        pending = [a for a in apps if a["state"] == "pending"]
        return {"pending": pending, "done": list(reversed(done)),
                "tenants": {a["tenant_id"]: _tenant_summary(p, who, a["tenant_id"])
                            for a in pending},
                "failed": None, "form": {}, "error": None, "error_field": None}

    @router.get("/review")
    def review_queue(request: Request) -> Response:
        return view(request, "review.html", review_ctx)

    @router.post("/review/{application_id}")
    def review_decide(request: Request, application_id: int, csrf: str = Form(""),
                      decision: str = Form(""), approved_yuan: str = Form(""),
                      reason: str = Form("")) -> Response:
        """Decide; a refusal shows the queue again with that application's form as typed and
        its field marked."""
        who = posted_by(request, csrf)
        if isinstance(who, Response):
            return who
        try:
            vouchers.review(p, who, application_id, decision=decision, reason=reason,
                            approved_fen=(_fen(approved_yuan, "approved_fen")
                                          if approved_yuan.strip() else None))
        except (Forbidden, NotFound) as exc:
            return problem(request, who, exc)
        except SuanliError as exc:
            return refused(request, who, exc, "review.html", review_ctx,
                           {"approved_yuan": approved_yuan, "reason": reason},
                           {"approved_fen": "approved_yuan"}, failed=application_id)
        return RedirectResponse("/review", status_code=303)

    # -- tenant: money and vouchers ----------------------------------------------------------
    def account_ctx(who: Principal) -> dict[str, Any]:
        if who.tenant_id is None:
            raise Forbidden("the account page is a tenant's")
        return {"money": ledger.tenant_account(p, who, who.tenant_id),
                "grants": vouchers.list_grants(p, who),
                "apps": vouchers.list_applications(p, who),
                "paid": vouchers.list_redemptions(p, who, limit=10),
                "bills": settlement.history(p, who)["items"],
                "programmes": [pr for pr in vouchers.list_programmes(p, who)
                               if pr["status"] == "open"],
                "form": {}, "error": None, "error_field": None}

    @router.get("/account")
    def account(request: Request) -> Response:
        return view(request, "account.html", account_ctx)

    @router.get("/account/bills.csv")
    def bills_csv(request: Request) -> Response:
        who = sess.current_user(p, request)
        if who is None:
            return to_login(request)
        try:
            items = settlement.history(p, who, months=24)["items"]
        except SuanliError as exc:
            return problem(request, who, exc)
        return Response(settlement.to_csv(items, (*settlement.COLUMNS, "settled")),
                        media_type="text/csv; charset=utf-8",
                        headers={**HEADERS, "Content-Disposition": 'attachment; filename="bills.csv"'})

    @router.post("/account/apply")
    def apply_vouchers(request: Request, csrf: str = Form(""), programme_id: int = Form(0),
                       requested_yuan: str = Form(""), planned_spend_yuan: str = Form(""),
                       planned_use: str = Form("")) -> Response:
        """Apply for vouchers; a refusal shows the form again, as typed, with the field marked."""
        who = posted_by(request, csrf)
        if isinstance(who, Response):
            return who
        try:
            vouchers.apply(p, who, programme_id,
                           requested_fen=_fen(requested_yuan, "requested_fen"),
                           planned_spend_fen=_fen(planned_spend_yuan, "planned_spend_fen"),
                           planned_use=planned_use)
        except Forbidden as exc:
            return problem(request, who, exc)
        except SuanliError as exc:
            return refused(request, who, exc, "account.html", account_ctx,
                           {"programme_id": programme_id, "requested_yuan": requested_yuan,
                            "planned_spend_yuan": planned_spend_yuan, "planned_use": planned_use},
                           {"requested_fen": "requested_yuan", "planned_spend_fen": "planned_spend_yuan"})
        return RedirectResponse("/account", status_code=303)

    # -- auditor: the audit log, redemptions, claw-back ---------------------------------------
    @router.get("/audit")
    def audit_page(request: Request) -> Response:
        return _audit(request, verdict=None)

    @router.post("/audit/verify")
    def audit_verify(request: Request, csrf: str = Form("")) -> Response:
        who = posted_by(request, csrf)
        if isinstance(who, Response):
            return who
        try:
            verdict = audit.verify_log(p, who)
        except SuanliError as exc:
            return problem(request, who, exc)
        return _audit(request, verdict=verdict)

    def _audit(request: Request, verdict: dict[str, Any] | None) -> Response:
        return view(request, "audit.html", lambda who: {
            "entries": audit.list_entries(p, who, limit=50)["items"],
            "redemptions": vouchers.list_redemptions(p, who, limit=50)["items"],
            "verdict": verdict})

    @router.post("/audit/clawback/{redemption_id}")
    def clawback(request: Request, redemption_id: int, csrf: str = Form(""),
                 reason: str = Form("")) -> Response:
        return acted(request, csrf, lambda who: vouchers.clawback(p, who, redemption_id, reason),
                     "/audit")

    # -- center operator: its center -----------------------------------------------------------
    @router.get("/center")
    def center_page(request: Request) -> Response:
        def build(who: Principal) -> dict[str, Any]:
            if who.center_id is None:
                raise Forbidden("the center page is a center operator's")
            return {"center": centers.get_center(p, who, who.center_id),
                    "used": centers.units_in_use(p, who, who.center_id),
                    "load": center_load(p, who, who.center_id),
                    "running": jobs.list_jobs(p, who, state=JobState.RUNNING, limit=100),
                    "statements": settlement.history(p, who)["items"],
                    "network": p.settings.network_id}
        return view(request, "center.html", build)

    # -- platform admin: the city dashboard ----------------------------------------------------
    @router.get("/dashboard")
    def dashboard(request: Request, screen: int = 0) -> Response:
        def build(who: Principal) -> dict[str, Any]:
            who.require(Role.PLATFORM_ADMIN)
            return {"screen": bool(screen)}
        return view(request, "dashboard.html", build)

    @router.get("/dashboard/data.json")
    def dashboard_data(request: Request) -> Response:
        who = sess.current_user(p, request)
        if who is None:
            return JSONResponse({"error": "sign in first"}, status_code=401)
        try:
            who.require(Role.PLATFORM_ADMIN)
        except SuanliError as exc:
            return JSONResponse({"error": exc.message}, status_code=403)
        # Shared by every admin and wall display for DASHBOARD_TTL_S: its figures are hourly.
        data = p.cached("dashboard", lambda: {**city_dashboard(p, who),
                                              "network": peer_report.network_view(p, who)},
                        ttl=DASHBOARD_TTL_S)
        return JSONResponse(jsonable_encoder(data), headers=HEADERS)

    return router


def _log_tail(p: Platform, who: Principal, job_id: int, stream: str, first: jobs.LogChunk,
              keep: int) -> tuple[jobs.LogChunk, int]:
    """The last `keep` bytes of a log read from its start (up to LOG_TAIL_SCAN_CHUNKS chunks:
    past that, the page follows on from where the scan stopped), and how many bytes came before."""
    chunk, text = first, first.data
    for _ in range(LOG_TAIL_SCAN_CHUNKS):
        if not chunk.data or chunk.eof:
            break
        chunk = jobs.job_logs(p, who, job_id, stream=stream, offset=chunk.next_offset, run_id=chunk.run_id)
        text = (text + chunk.data)[-2 * keep:]
    data = text.encode()
    kept = data[-keep:]
    while kept and kept[0] & 0xC0 == 0x80:  # not in the middle of a character
        kept = kept[1:]
    end = chunk.next_offset
    return (jobs.LogChunk(kept.decode("utf-8", "replace"), end - len(kept), end, chunk.eof, chunk.run_id),
            end - len(kept))


def _local(path: str) -> str:
    """Only a path on this site (no open redirect)."""
    return path if path.startswith("/") and not path.startswith("//") else "/"


def _home(who: Principal | None) -> str:
    if who is None:
        return "/login"
    return {Role.REVIEWER: "/review", Role.PLATFORM_ADMIN: "/dashboard", Role.AUDITOR: "/audit",
            Role.CENTER_OPERATOR: "/center"}.get(who.role, "/jobs")


# The job form's fields, by the name a service's error gives the field it refuses.
FORM_FIELDS = {"resources": "device", "budget_fen": "budget_yuan"}


def _job_input(form: dict[str, Any]) -> JobInput:
    device, policy = _choice(form, "device", DeviceKind), _choice(form, "policy", Policy)
    budget = str(form.get("budget_yuan") or "").strip()
    budget_fen = _fen(budget, "budget_fen") if budget else None
    command = str(form["command"]).strip()
    if not command:
        raise InvalidInput("give a command", field="command")
    return JobInput(name=str(form["name"]).strip() or "job", command=["sh", "-c", command],
                    device=device, units=int(form["units"]), walltime_s=int(form["walltime_s"]),
                    policy=policy, budget_fen=budget_fen)


def _choice(form: dict[str, Any], name: str, kind: type[E]) -> E:
    """The form's field `name` as one of the enum `kind`; else the form's bad input, naming the
    choices (in our words, not Python's "is not a valid ...")."""
    value = str(form[name])
    if value not in set(kind):
        raise InvalidInput(f"{name} is one of {', '.join(kind)}, not {value!r}",
                           field=name)
    return kind(value)


def _fen(text: str, field: str) -> int:
    """An amount typed in yuan, in fen; one that is not is the form's bad input."""
    try:
        return parse_yuan(text)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=field) from exc


def _tenant_summary(p: Platform, who: Principal, tenant_id: int) -> dict[str, Any]:
    """What a reviewer judges an application by: who the tenant is, its money and what it has
    run (never its jobs: their commands and output are its own)."""
    from ..services import usage

    return {"tenant": tenants.get_tenant(p, who, tenant_id),
            "money": ledger.tenant_account(p, who, tenant_id),
            "usage": usage.list_usage(p, who, tenant_id=tenant_id, limit=1).totals}


def _usage(p: Platform, who: Principal, job_id: int) -> list[Any]:
    from ..services import usage

    return list(usage.list_usage(p, who, job_id=job_id).items)
