"""`suanli status`: one screen — my jobs by state, my money and vouchers, the centers' health.
(The `sky status` / `sinfo` of suanli.) Each role sees what it may: a tenant its own jobs and
account, a center operator its center's jobs, the platform admin and the auditor the network;
the platform admin also the control plane, which `--control-plane` shows alone."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import typer
from rich.table import Table

from ..client import ApiError, Client
from .common import Output, OutputOpt, api_errors, client, console, emit_json, fail
from .format import day, pflops, when, yuan, zone_name
from .jobs import STATE_STYLE, _queue_text, _state

T = TypeVar("T")
STATES = ("RUNNING", "PLACED", "QUEUED", "COMPLETED", "FAILED", "TIMEOUT", "CANCELLED")
ACTIVE = ("RUNNING", "PLACED", "QUEUED")
RECENT = 5


def _maybe(fn: Callable[[], T]) -> T | None:
    """A section's data, or None when the caller's role may not see it (403)."""
    try:
        return fn()
    except ApiError as exc:
        if exc.status in (403, 404):
            return None
        raise


def gather(c: Client) -> dict[str, Any]:
    """Everything the screen shows, as the API gives it (fen, UTC)."""
    me = c.me()
    data: dict[str, Any] = {"me": me, "url": c.url}
    counts: dict[str, int] = {}
    for st in STATES:
        page = _maybe(partial(c.list_jobs, state=st, limit=1))
        if page is None:
            counts = {}
            break
        counts[st] = int(page["total"])
    data["jobs"] = {"counts": counts, "active": []} if counts else None
    if counts:
        active: list[dict[str, Any]] = []
        for st in ACTIVE:
            if counts[st]:
                active += c.list_jobs(state=st, limit=RECENT)["items"]
        active.sort(key=lambda j: j["id"], reverse=True)
        data["jobs"]["active"] = active[:RECENT]
    tenant_id = me.get("tenant_id")
    if tenant_id is None and data["jobs"] and data["jobs"]["active"]:
        names = {t["id"]: t["name"] for t in _maybe(lambda: c.list_tenants()["items"]) or []}
        for j in data["jobs"]["active"]:
            j["tenant_name"] = names.get(j["tenant_id"], str(j["tenant_id"]))
    if tenant_id is not None:
        data["account"] = _maybe(lambda: c.tenant_account(tenant_id))
        tenants = _maybe(lambda: c.list_tenants()["items"]) or []
        data["tenant"] = next((t for t in tenants if t["id"] == tenant_id), None)
        data["grants"] = _maybe(lambda: c.list_grants(tenant_id=tenant_id)["items"])
    elif me["role"] in ("platform_admin", "reviewer", "auditor"):
        data["programmes"] = _maybe(lambda: c.list_programmes()["items"])
        if me["role"] == "reviewer":
            data["pending"] = _maybe(lambda: c.list_applications(state="pending")["items"])
    if me["role"] == "platform_admin":
        data["control_plane"] = _maybe(c.control_plane)
    data["centers"] = _maybe(lambda: c.list_centers()["items"])
    data["capacity"] = _maybe(c.capacity) if me["role"] in ("platform_admin", "auditor") else None
    return data


def _jobs_section(jobs: dict[str, Any], whose: str) -> None:
    counts = jobs["counts"]
    parts = [f"[{STATE_STYLE[s]}]{counts[s]} {s.lower()}[/]" for s in STATES if counts[s]]
    console.print(f"[bold]{whose} jobs 作业[/]  " + (" · ".join(parts) or "none yet")
                  + f"  [dim](total {sum(counts.values())})[/]")
    if not jobs["active"]:
        return
    t = Table(title=None, show_edge=False, pad_edge=False, box=None)
    tenants = any("tenant_name" in j for j in jobs["active"])
    for col in ("id", "name", "state", *(("tenant",) if tenants else ()), "center", "device",
                "units", "since · queue"):
        t.add_column(col, header_style="dim")
    for j in jobs["active"]:
        res = j["resources"]
        since = when(j["started_at"]) if j["started_at"] else _queue_text(j) or \
            "submitted " + when(j["submitted_at"])
        who = (j.get("tenant_name", ""),) if tenants else ()
        t.add_row(str(j["id"]), j["name"], _state(j["state"]), *who, j.get("center") or "-",
                  res["device"] + (f" {res['model']}" if res.get("model") else ""),
                  str(res["units"]), since)
    console.print(t)
    more = sum(counts[s] for s in ACTIVE) - len(jobs["active"])
    if more > 0:
        console.print(f"[dim]  … and {more} more: suanli job list --state running|queued[/]")


def _money_section(data: dict[str, Any]) -> None:
    a = data.get("account")
    if a:
        console.print(
            f"[bold]money 账户[/]  spendable 可用 [bold]{yuan(a['spendable_fen'])}[/]  "
            f"[dim](prepaid {yuan(a['prepaid_fen'])} + credit limit {yuan(a['credit_limit_fen'])}"
            f" − owed {yuan(a['owed_fen'])} − held by unfinished jobs {yuan(a['held_fen'])})[/]",
            highlight=False)
    grants = data.get("grants")
    if grants is not None:
        live = [g for g in grants if g["state"] == "active"]
        if live:
            left = sum(g["left_fen"] for g in live)
            granted = sum(g["amount_fen"] for g in live)
            soonest = min(g["expires_at"] for g in live)
            console.print(f"[bold]vouchers 算力券[/]  [bold]{yuan(left)}[/] left of {yuan(granted)}"
                          f" in {len(live)} active grant{'s' if len(live) != 1 else ''} "
                          f"[dim](first expires {day(soonest)})[/]", highlight=False)
        else:
            console.print("[bold]vouchers 算力券[/]  none active [dim](suanli voucher programme "
                          "list; suanli voucher apply)[/]", highlight=False)
    progs = data.get("programmes")
    if progs:
        console.print(
            f"[bold]voucher programmes 算力券[/]  {len(progs)}: available "
            f"{yuan(sum(p['available_fen'] for p in progs))}, committed "
            f"{yuan(sum(p['committed_fen'] for p in progs))}, paid "
            f"{yuan(sum(p['paid_fen'] for p in progs))}", highlight=False)
    pending = data.get("pending")
    if pending is not None:
        console.print(f"[bold]applications to review 待审[/]  {len(pending)} "
                      "[dim](suanli voucher applications --state pending)[/]", highlight=False)


STATUS_STYLE = {"online": "green", "draining": "yellow", "offline": "red"}


def _status_cell(c: dict[str, Any]) -> str:
    """A center's status, coloured, with the operator's or the health check's reason."""
    status = f"[{STATUS_STYLE.get(c['status'], 'white')}]{c['status']}[/]"
    if c.get("status_reason"):
        status += f" [dim]{c['status_reason']}[/]"
    return status


def _centers_section(centers: list[dict[str, Any]], capacity: dict[str, Any] | None) -> None:
    t = Table(title="centers 算力中心", title_justify="left", show_edge=False, box=None)
    for col in ("center", "status", "health", "units in use", "pools"):
        t.add_column(col, header_style="dim", justify="right" if col == "units in use" else "left")
    for c in centers:
        used = sum(p.get("used_units") or 0 for p in c["pools"])
        total = sum(p["total_units"] for p in c["pools"])
        if c.get("health_failures"):
            health = f"[red]{c['health_failures']} failed checks[/]"
        elif c.get("health_checked_at"):
            health = f"ok {when(c['health_checked_at'])}"
        else:
            health = "[dim]not checked yet[/]"
        status = _status_cell(c)
        pools = ", ".join(f"{p['name']} {p['device_kind']}" for p in c["pools"])
        t.add_row(c["slug"], status, health, f"{used:,}/{total:,}", pools)
    console.print(t)
    if capacity:
        tot = capacity["total"]
        console.print(f"[bold]city 城市[/]  units in use {tot['total_units'] - tot['free_units']:,}"
                      f"/{tot['total_units']:,}; free FP16 {pflops(tot['free_pflops'].get('fp16'))}"
                      f" of {pflops(tot['total_pflops'].get('fp16'))}", highlight=False)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s ago" if seconds < 60 else f"{seconds / 60:.0f} min ago"


def _control_plane_section(cp: dict[str, Any]) -> None:
    """The platform admin's view of the control plane: the processes seen in the last minute,
    the engine's leader and its last pass (the centers' health follows in the centers table)."""
    leader = cp.get("leader")
    if leader is None:
        console.print("[bold]engine leader 调度主节点[/]  [red]none holds the lease[/] "
                      "[dim](nothing is placed or closed until an engine candidate takes it)[/]",
                      highlight=False)
    else:
        console.print(
            f"[bold]engine leader 调度主节点[/]  {leader['host']} pid {leader['pid']} · epoch "
            f"{leader['epoch']} · renewed {_age(leader['lease_age_s'])} · expires in "
            f"{leader['expires_in_s']:.1f} s", highlight=False)
    last = cp.get("last_pass")
    if last is not None:
        console.print(f"[bold]last pass 最近一轮调度[/]  {when(last['at'])} · {last['ms']} ms",
                      highlight=False)
    t = Table(title=f"control plane 控制面 (seen in the last {cp['window_s']:.0f} s)",
              title_justify="left", show_edge=False, box=None)
    for col in ("role", "host", "pid", "version", "up since", "heartbeat", "engine"):
        t.add_column(col, header_style="dim")
    for r in cp["replicas"]:
        engine = ""
        if r["role"] == "engine":
            engine = (f"[green]leader[/] epoch {r['epoch']}" if r["leading"]
                      else "[dim]standby[/]")
        t.add_row(r["role"], r["host"], str(r["pid"]), r["version"], when(r["started_at"]),
                  _age(r["age_s"]), engine)
    console.print(t)


def _control_plane_centers(centers: list[dict[str, Any]]) -> None:
    """Each center's health as the control plane reports it (the engine's checks)."""
    t = Table(title="centers' health 算力中心健康", title_justify="left", show_edge=False, box=None)
    for col in ("center", "status", "health", "last check", "detail"):
        t.add_column(col, header_style="dim")
    for c in centers:
        status = _status_cell(c)
        if c.get("health_failures"):
            health = f"[red]{c['health_failures']} failed checks[/]"
        elif c.get("health_checked_at"):
            health = "[green]ok[/]"
        else:
            health = "[dim]not checked yet[/]"
        # a failing check's detail; a healthy one's says only where the check reached the center
        t.add_row(c["slug"], status, health, when(c.get("health_checked_at")),
                  (c.get("health_detail") or "") if c.get("health_failures") else "")
    console.print(t)


def _control_plane_screen(output: Output) -> None:
    """`suanli status --control-plane`: the control plane alone (platform admin)."""
    with api_errors(), client() as c:
        try:
            cp = c.control_plane()
        except ApiError as exc:
            if exc.status == 403:
                fail(f"{exc.message} — `suanli status --control-plane` is for the platform admin; "
                     "`suanli status` shows what your role may see")
            raise
        url = c.url
    if output is Output.json:
        return emit_json(cp)
    console.print(f"[bold]suanli status --control-plane[/] · {url} · "
                  f"[dim]times in {zone_name()}[/]", highlight=False)
    _control_plane_section(cp)
    _control_plane_centers(cp["centers"])


def status_screen(
    output: Output = OutputOpt,
    as_json: bool = typer.Option(False, "--json", help="the same as -o json"),
    control_plane: bool = typer.Option(
        False, "--control-plane", "-c",
        help="only the control plane (platform admin): replicas, leader, last pass, centers' "
             "health"),
) -> None:
    """One screen: your jobs by state (and the latest running or queued), your balance and
    voucher grants left, and the centers' health. An admin sees the whole network and the
    control plane: API replicas and engine candidates seen in the last minute, the engine's
    leader and its last pass (`--control-plane`: that alone)."""
    if as_json:
        output = Output.json
    if control_plane:
        return _control_plane_screen(output)
    with api_errors(), client() as c:
        data = gather(c)
    if output is Output.json:
        return emit_json(data)
    me = data["me"]
    who = f"{me['username']} ({me['role']})"
    tenant = data.get("tenant")
    if tenant:
        who += f" · {tenant['name']}"
    console.print(f"[bold]suanli status[/] · {who} · {data['url']} · [dim]times in {zone_name()}[/]",
                  highlight=False)
    role = me["role"]
    whose = {"platform_admin": "network", "auditor": "network",
             "center_operator": "my center's"}.get(role, "my")
    if data["jobs"] is not None:
        _jobs_section(data["jobs"], whose)
    _money_section(data)
    if data.get("control_plane") is not None:
        _control_plane_section(data["control_plane"])
    if data.get("centers") is not None:
        _centers_section(data["centers"], data.get("capacity"))
