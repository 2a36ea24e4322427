"""`suanli center|tenant|user|token|capacity|usage` commands."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.table import Table

from .common import (
    Output,
    OutputOpt,
    center_slugs,
    console,
    emit_json,
    fail,
    run,
    tenant_name,
    tenant_names,
)
from .format import (
    duration,
    fen_from_yuan,
    grid,
    hours,
    kwh,
    parse_duration,
    parse_time,
    pfh,
    pflops,
    when,
    yuan,
)

center_app = typer.Typer(help="Compute centers and their pools. 算力中心")
tenant_app = typer.Typer(help="Tenants (enterprises). 租户/企业")
user_app = typer.Typer(help="Users. 用户")
token_app = typer.Typer(help="API tokens. 令牌")


def _yes(flag: bool) -> str:
    return "✓" if flag else ""


@center_app.command("list")
def center_list(output: Output = OutputOpt) -> None:
    """List the centers of the network."""
    centers = run(lambda c: c.list_centers())["items"]
    if output is Output.json:
        return emit_json(centers)
    t = Table(title="centers 算力中心")
    for col in ("center", "name", "kind", "district", "status", "emulated", "pools",
                "FP16 P", "FP64 P"):
        t.add_column(col)
    for c in centers:
        t.add_row(f"{c['slug']}\n[dim]{c.get('identifier') or ''}[/]",
                  f"{c['name_zh']}\n{c['name_en']}", c["kind"],
                  c["district"], c["status"], "emulated" if c["emulated"] else "real",
                  str(len(c["pools"])), pflops(c["peak_pflops"]["fp16"]),
                  pflops(c["peak_pflops"]["fp64"]))
    console.print(t)


def resolve_center(c: Any, ref: str) -> dict[str, Any]:
    if ref.isdigit():
        found: dict[str, Any] = c.get_center(int(ref))
        return found
    for center in c.list_centers()["items"]:
        if center["slug"] == ref:
            return dict(center)
    fail(f"no center {ref!r}")


def resolve_pool(c: Any, ref: str) -> int:
    """A pool id from 'center/pool' (e.g. qd-ai/ascend-910b) or an id."""
    if ref.isdigit():
        return int(ref)
    center, _, name = ref.partition("/")
    for x in c.list_centers()["items"]:
        if x["slug"] == center:
            for pool in x["pools"]:
                if pool["name"] == name:
                    return int(pool["id"])
    fail(f"no pool {ref!r} (write it as center/pool, e.g. qd-ai/ascend-910b)")


@center_app.command("show")
def center_show(center: str = typer.Argument(..., help="slug (or id)"),
                output: Output = OutputOpt) -> None:
    """Show one center with its pools."""
    data = run(lambda c: resolve_center(c, center))
    if output is Output.json:
        return emit_json(data)
    kind = "emulated by the local executor" if data["emulated"] else "real"
    console.print(f"[bold]{data['name_zh']}[/] / {data['name_en']}  ("
                  f"{data['slug']}, {data['kind']}, {data['district'] or '-'}, PUE {data['pue']},"
                  f" {data['connector']} connector, {kind}, {data['status']})")
    if data.get("identifier"):
        console.print(f"  identifier 统一标识: {data['identifier']}")
    if data.get("health_checked_at"):
        console.print(f"  health: {data['health_detail'] or 'ok'} (checked "
                      f"{when(data['health_checked_at'])}, {data['health_failures']} failures)"
                      + (f"; {data['status_reason']}" if data["status_reason"] else ""))
    t = Table(title="pools 资源池")
    for col in ("id", "pool", "device", "model", "国产", "units", "in use", "FP64", "FP32",
                "FP16", "INT8", "price/unit·h", "arch · features · environments"):
        t.add_column(col)
    for p in data["pools"]:
        pk = p["peak_pflops"]
        name = p["name"] + (" [red](withdrawn)[/]" if p.get("withdrawn_at") else "")
        if p.get("identifier"):
            name += f"\n[dim]{p['identifier']}[/]"
        t.add_row(str(p["id"]), name, p["device_kind"], p["device_model"],
                  _yes(p["domestic"]), f"{p['nodes']}×{p['units_per_node']}",
                  str(p.get("used_units") or 0), pflops(pk["fp64"]), pflops(pk["fp32"]),
                  pflops(pk["fp16"]), pflops(pk["int8"]), yuan(p["price_fen_per_unit_hour"]),
                  _software(p))
    console.print(t)


def _software(pool: dict[str, Any]) -> str:
    """`x86_64 · cuda-12.4, mpi · env pytorch-2.4`: what programs run on a pool."""
    parts = [str(pool.get("arch") or "x86_64")]
    if pool.get("features"):
        parts.append(", ".join(pool["features"]))
    if pool.get("environments"):
        parts.append("env " + ", ".join(sorted(pool["environments"])))
    return " · ".join(parts)


DEFAULT_TFLOPS = {"cpu": {"tflops_fp64": 0.05, "tflops_fp32": 0.1},
                  "gpu": {"tflops_fp32": 19.5, "tflops_fp16": 312.0},
                  "npu": {"tflops_fp32": 80.0, "tflops_fp16": 320.0}}


def _pool_name(partition: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", partition.lower()).strip("-")
    return (name if len(name) >= 2 else f"p-{name}")[:63]


def _discovered_center(c: Any, connector: str, config: dict[str, str], *, slug: str,
                       name_zh: str, name_en: str, kind: str, district: str, pue: float,
                       price_fen: int, tflops: dict[str, float]) -> dict[str, Any]:
    found = c.discover_pools(connector, config)["pools"]
    if not found:
        fail(f"the {connector} backend reports no partitions or resources")
    pools: list[dict[str, Any]] = []
    mapping: dict[str, dict[str, str]] = {}  # pool -> Slurm partition / Ray resource
    for d in found:
        source = d.get("partition") or d.get("resource") or d["name"]
        name = _pool_name(source)
        mapping.setdefault("partitions" if d.get("partition") else "resources", {})[name] = source
        gres = str(d.get("gres") or "")
        model = d.get("device_model") or (
            gres.split(":")[1] if d["device_kind"] != "cpu" and gres.count(":") >= 2
            else f"{source} CPU")
        pool = {"name": name, "device_kind": d["device_kind"], "device_model": model,
                "units_per_node": d["units_per_node"], "nodes": d["nodes"],
                "memory_gb_per_node": d["memory_gb_per_node"], "price_fen_per_unit_hour": price_fen,
                **(tflops or DEFAULT_TFLOPS[d["device_kind"]])}
        if d.get("max_walltime_s"):
            pool["max_walltime_s"] = d["max_walltime_s"]
        for key in ("arch", "features"):  # where the backend knows them
            if d.get(key):
                pool[key] = d[key]
        pools.append(pool)
    return {"slug": slug, "name_zh": name_zh, "name_en": name_en, "kind": kind,
            "district": district, "pue": pue, "connector": connector,
            "connector_config": {**config, **mapping}, "pools": pools}


@center_app.command("add")
def center_add(
    file: Path | None = typer.Option(None, "--file", "-f", help="center description (YAML or "
                                     "JSON) with its pools; see examples/center.yaml"),
    connector: str | None = typer.Option(None, help="discover the pools from a running backend, "
                                         "e.g. slurm"),
    config: list[str] = typer.Option([], "--config", help="connector setting KEY=VALUE, e.g. "
                                     "socket=/run/slurmrestd.sock (repeatable)"),
    slug: str | None = typer.Option(None, help="short id, e.g. hpc-qd"),
    name_zh: str | None = typer.Option(None, help="Chinese name"),
    name_en: str | None = typer.Option(None, help="English name"),
    kind: str = typer.Option("supercomputing", help="supercomputing, ai, cloud or edge"),
    district: str = typer.Option("", help="district"),
    pue: float = typer.Option(1.3, help="power usage effectiveness"),
    price: str = typer.Option("0", "--price", help="price per unit-hour in yuan for discovered "
                              "pools, e.g. 9.50"),
    price_fen: int | None = typer.Option(None, "--price-fen", hidden=True,
                                         help="the price in fen (old flag; use --price)"),
    tflops: list[str] = typer.Option([], help="per-unit peak of discovered pools, e.g. "
                                     "fp64=0.05 (repeatable; default: typical for the device)"),
    output: Output = OutputOpt,
) -> None:
    """Register a center (platform admin): from a file, or by discovering a backend's partitions."""
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
            body = yaml.safe_load(text) if file.suffix in (".yaml", ".yml") else json.loads(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            fail(f"cannot read {file}: {exc}")
        if not isinstance(body, dict):
            fail(f"{file} must describe one center (a mapping)")
    elif connector:
        if not (slug and name_zh and name_en):
            fail("--slug, --name-zh and --name-en are needed with --connector")
        settings = dict(item.split("=", 1) for item in config if "=" in item)
        if len(settings) != len(config):
            fail("--config takes KEY=VALUE")
        try:
            figures = {f"tflops_{k.lower()}": float(v)
                       for k, v in (t.split("=", 1) for t in tflops)}
        except ValueError:
            fail("--tflops takes PRECISION=NUMBER, e.g. fp64=0.05")
        if price_fen is None:
            try:
                price_fen = fen_from_yuan(price, "--price", zero=True)
            except ValueError as exc:
                fail(str(exc))
        fen = price_fen
        body = run(lambda c: _discovered_center(
            c, connector, settings, slug=slug, name_zh=name_zh, name_en=name_en, kind=kind,
            district=district, pue=pue, price_fen=fen, tflops=figures))
    else:
        fail("give --file, or --connector with --config to discover the pools")
    data = run(lambda c: c.create_center(body))
    if output is Output.json:
        return emit_json(data)
    console.print(f"center {data['slug']} added with {len(data['pools'])} pools: "
                  + ", ".join(f"{p['name']} ({p['nodes']}×{p['units_per_node']} "
                              f"{p['device_kind']})" for p in data["pools"]))


@center_app.command("status")
def center_status(center: str = typer.Argument(..., help="id or slug"),
                  status: str = typer.Argument(..., help="online, offline or draining"),
                  reason: str = typer.Option("", help="why")) -> None:
    """Set a center online, offline or draining."""
    data = run(lambda c: c.set_center_status(resolve_center(c, center)["id"], status, reason))
    console.print(f"center {data['slug']} is {data['status']}")


@center_app.command("drain")
def center_drain(center: str = typer.Argument(..., help="id or slug"),
                 reason: str = typer.Option("", help="why")) -> None:
    """No new placements on the center; running jobs finish."""
    data = run(lambda c: c.set_center_status(resolve_center(c, center)["id"], "draining",
                                             reason))
    console.print(f"center {data['slug']} is draining")


def capacity(output: Output = OutputOpt) -> None:
    """The city's capacity in P (PFLOPS): total and free, by precision, kind and district."""
    data = run(lambda c: c.capacity())
    if output is Output.json:
        return emit_json(data)
    t = Table(title="city capacity 城市算力 (P = PFLOPS, peak)")
    t.add_column("scope")
    for prec in ("fp64", "fp32", "fp16", "int8"):
        t.add_column(f"{prec.upper()} total")
        t.add_column("free")
    t.add_column("units in use")

    def row(name: str, fig: dict[str, Any]) -> None:
        cells = [name]
        for prec in ("fp64", "fp32", "fp16", "int8"):
            cells += [pflops(fig["total_pflops"].get(prec)), pflops(fig["free_pflops"].get(prec))]
        cells.append(f"{fig['total_units'] - fig['free_units']:,}/{fig['total_units']:,}")
        t.add_row(*cells)

    row("[bold]city[/]", data["total"])
    row("domestic 国产", data["domestic"])
    for k, v in data["by_kind"].items():
        row(f"kind: {k}", v)
    for k, v in data["by_district"].items():
        row(f"district: {k}", v)
    console.print(t)


def usage(job: int | None = typer.Option(None, "--job", help="only this job"),
          since: str | None = typer.Option(None, help="runs that ended at or after this date or "
                                           "time, e.g. 2026-12-01 (midnight in the display zone, "
                                           "CST unless --tz) or 2026-12-01T08:00Z"),
          until: str | None = typer.Option(None, help="runs that ended before this date or time "
                                           "(e.g. 2027-01-01: the whole of December)"),
          limit: int = typer.Option(20, help="rows to show (the totals count them all)"),
          output: Output = OutputOpt) -> None:
    """Metered usage: unit-hours, standard P·h, energy and amount, per run."""
    try:
        start = parse_time(since, "--since") if since else None
        end = parse_time(until, "--until") if until else None
    except ValueError as exc:
        fail(str(exc))
    if start and end and end <= start:
        fail("--until must be after --since")
    data = run(lambda c: c.usage(job_id=job, limit=limit, since=start, until=end))
    if output is Output.json:
        return emit_json(data)
    slugs = run(center_slugs)
    span = ""
    if start or end:
        span = f" · ended {'from ' + when(start) if start else ''}" \
               f"{' until ' + when(end) if end else ''}"
    numbers = ("run", "job", "units", "ran", "unit·h", "P·h", "kWh", "price", "amount")
    t = grid(f"usage 计量{span}", ("run", "job", "center", "units", "ended", "ran", "unit·h",
                                   "P·h", "kWh", "price", "amount"),
             ((str(u["run_id"]), str(u["job_id"]), slugs.get(u["center_id"], "?"),
               str(u["units"]), when(u["ended_at"]),
               duration((datetime.fromisoformat(u["ended_at"])
                         - datetime.fromisoformat(u["started_at"])).total_seconds()),
               hours(u["unit_seconds"] / 3600), pfh(u["pflops_hours"]), kwh(u["energy_wh"]),
               yuan(u["price_fen_per_unit_hour"]), yuan(u["amount_fen"])) for u in data["items"]),
             right=numbers, whole=("center", "ended"))
    tot = data["totals"]
    console.print(t)
    console.print(f"total: {tot['runs']} runs, {hours(tot['unit_hours'])} unit·h, "
                  f"{pfh(tot['pflops_hours'])} P·h, {kwh(tot['energy_wh'])} kWh, "
                  f"{yuan(tot['amount_fen'])}", highlight=False)


@tenant_app.command("add")
def tenant_add(name: str = typer.Option(..., help="enterprise name"),
               credit_code: str = typer.Option(..., help="统一社会信用代码 (18 characters)"),
               district: str = typer.Option("", help="district"),
               contact: str = typer.Option("", help="contact person"),
               output: Output = OutputOpt) -> None:
    """Register a tenant (platform admin). The credit code is checked (GB 32100-2015)."""
    data = run(lambda c: c.create_tenant({"name": name, "credit_code": credit_code,
                                          "district": district, "contact_name": contact}))
    if output is Output.json:
        return emit_json(data)
    console.print(f"tenant #{data['id']} {data['name']} ({data['credit_code']}) added")


@tenant_app.command("list")
def tenant_list(output: Output = OutputOpt) -> None:
    """List tenants."""
    data = run(lambda c: c.list_tenants())["items"]
    if output is Output.json:
        return emit_json(data)
    t = Table(title="tenants 租户")
    for col in ("id", "name", "credit code", "district", "contact"):
        t.add_column(col)
    for x in data:
        t.add_row(str(x["id"]), x["name"], x["credit_code"], x["district"], x["contact_name"])
    console.print(t)


quota_app = typer.Typer(help="Tenant quotas: the most units of a device kind a tenant may hold. 配额",
                        no_args_is_help=True)
tenant_app.add_typer(quota_app, name="quota")


def _quota_table(tenant_id: int, data: list[dict[str, Any]]) -> Table:
    t = Table(title=f"tenant {tenant_id} quotas 配额")
    for col in ("device", "max units", "in use"):
        t.add_column(col)
    for q in data:
        t.add_row(q["device_kind"], str(q["max_units"]), str(q["in_use"]))
    return t


@tenant_app.command("peer-rule")
def tenant_peer_rule(
    tenant: int = typer.Argument(..., help="tenant id"),
    earlier_by: str | None = typer.Option(None, "--earlier-by", help="peers only when they finish "
                                          "this much earlier than home: 600, 10m, 1h"),
    off: bool = typer.Option(False, "--platform-default", help="follow the platform's rule"),
    output: Output = OutputOpt,
) -> None:
    """Home first: send the tenant's jobs to a peer platform only when it finishes them earlier
    by more than a margin (platform admin, or the tenant's admin)."""
    if (earlier_by is None) == (not off):
        fail("give --earlier-by DURATION or --platform-default")
    try:
        seconds = None if off else parse_duration(str(earlier_by))
    except ValueError as exc:
        fail(f"--earlier-by: {exc}")
    data = run(lambda c: c.set_peer_rule(tenant, seconds))
    if output is Output.json:
        return emit_json(data)
    rule = data.get("peer_earlier_by_s")
    console.print(f"tenant {tenant}: " + ("the platform's rule for peers" if rule is None else
                                          f"peers only when {duration(rule)} earlier than home"))


@quota_app.command("list")
def quota_list(tenant: int = typer.Argument(..., help="tenant id"), output: Output = OutputOpt) -> None:
    """Show a tenant's quotas and what its running jobs hold."""
    data = run(lambda c: c.tenant_quotas(tenant))
    if output is Output.json:
        return emit_json(data)
    console.print(_quota_table(tenant, data) if data else f"tenant {tenant} has no quotas")


@quota_app.command("set")
def quota_set(tenant: int = typer.Argument(..., help="tenant id"),
              device: str = typer.Option(..., "--device", help="cpu, gpu or npu"),
              max_units: int = typer.Option(..., "--max-units", help="most units held at once"),
              output: Output = OutputOpt) -> None:
    """Set a tenant's quota for one device kind (platform admin)."""
    if max_units < 0:
        fail("--max-units must not be negative")
    data = run(lambda c: c.set_quota(tenant, device.lower(), max_units))
    if output is Output.json:
        return emit_json(data)
    console.print(_quota_table(tenant, data))


@quota_app.command("unset")
def quota_unset(tenant: int = typer.Argument(..., help="tenant id"),
                device: str = typer.Option(..., "--device", help="cpu, gpu or npu"),
                output: Output = OutputOpt) -> None:
    """Remove a tenant's quota for one device kind (platform admin)."""
    data = run(lambda c: c.set_quota(tenant, device.lower(), None))
    if output is Output.json:
        return emit_json(data)
    console.print(_quota_table(tenant, data) if data else f"tenant {tenant} has no quotas")


@user_app.command("add")
def user_add(username: str = typer.Argument(...),
             role: str = typer.Option(..., help="platform_admin, center_operator, tenant_admin,"
                                      " tenant_user, reviewer or auditor"),
             tenant: int | None = typer.Option(None, help="tenant id"),
             center: str | None = typer.Option(None, help="center slug (for a center operator)"),
             password: bool = typer.Option(False, "--password",
                                           help="ask for a password (8+ characters) for the portal"),
             output: Output = OutputOpt) -> None:
    """Add a user (it signs in with a token from `suanli token create`, or with its password)."""
    body: dict[str, object] = {"username": username, "role": role, "tenant_id": tenant,
                               "center_id": None}
    if password:
        body["password"] = typer.prompt("password", hide_input=True, confirmation_prompt=True)

    def create(c: Any) -> Any:
        if center is not None:
            body["center_id"] = resolve_center(c, center)["id"]
        return c.create_user(body)

    data = run(create)
    if output is Output.json:
        return emit_json(data)
    console.print(f"user #{data['id']} {data['username']} ({data['role']}) added")


@user_app.command("list")
def user_list(output: Output = OutputOpt) -> None:
    """List the users you may see."""
    data = run(lambda c: c.list_users())["items"]
    if output is Output.json:
        return emit_json(data)
    slugs = run(center_slugs) if any(u["center_id"] for u in data) else {}
    tenants = run(tenant_names) if any(u["tenant_id"] for u in data) else {}
    t = Table(title="users 用户")
    for col in ("id", "username", "role", "tenant", "center", "disabled"):
        t.add_column(col)
    for u in data:
        t.add_row(str(u["id"]), u["username"], u["role"], tenant_name(tenants, u["tenant_id"]),
                  slugs.get(u["center_id"], "?") if u["center_id"] else "", _yes(u["disabled"]))
    console.print(t)


def _resolve_user(c: Any, ref: str) -> int:
    """A user id from an id or a username (among the users the caller may see)."""
    for u in c.list_users()["items"]:
        if u["username"] == ref or str(u["id"]) == ref:
            return int(u["id"])
    fail(f"no user {ref!r}")


def _set_disabled(name: str, disabled: bool, reason: str, output: Output) -> None:
    data = run(lambda c: c.set_user_disabled(_resolve_user(c, name), disabled, reason))
    if output is Output.json:
        return emit_json(data)
    state = "disabled: its tokens and sessions stop now" if disabled else "enabled"
    console.print(f"user #{data['id']} {data['username']} {state}")


@user_app.command("disable")
def user_disable(name: str = typer.Argument(..., help="username or id"),
                 reason: str = typer.Option("", help="why (kept in the audit log)"),
                 output: Output = OutputOpt) -> None:
    """Disable a user: its tokens and browser sessions stop at once; it cannot sign in."""
    _set_disabled(name, True, reason, output)


@user_app.command("enable")
def user_enable(name: str = typer.Argument(..., help="username or id"),
                reason: str = typer.Option("", help="why (kept in the audit log)"),
                output: Output = OutputOpt) -> None:
    """Enable a disabled user (its tokens that are not revoked or expired work again)."""
    _set_disabled(name, False, reason, output)


@token_app.command("create")
def token_create(name: str = typer.Option("", help="a label"),
                 user: int | None = typer.Option(None, help="user id (platform admin only)"),
                 expires: str | None = typer.Option(None, help="expire after this long, e.g. "
                                                    "30d, 12h, 90m (default: never, or when the "
                                                    "token you use does)"),
                 output: Output = OutputOpt) -> None:
    """Create an API token. The secret is shown once. It ends when the token you create it with
    is revoked or expires."""
    expires_in_s = None
    if expires is not None:
        try:
            expires_in_s = parse_duration(expires)
        except ValueError as exc:
            fail(f"--expires: {exc}")
        if expires_in_s <= 0:
            fail("--expires must be longer than 0 s")
    data = run(lambda c: c.create_token(name, user, expires_in_s))
    if output is Output.json:
        return emit_json(data)
    until = f", expires {when(data['expires_at'])}" if data.get("expires_at") else ""
    console.print(f"token #{data['id']} for user {data['user_id']}{until} — shown only now:")
    console.print(data["token"], highlight=False)


@token_app.command("list")
def token_list(output: Output = OutputOpt) -> None:
    """List your tokens (prefixes only)."""
    data = run(lambda c: c.list_tokens())["items"]
    if output is Output.json:
        return emit_json(data)
    t = Table(title="tokens 令牌")
    for col in ("id", "user", "name", "prefix", "created", "last used", "expires", "revoked",
                "from"):
        t.add_column(col)
    for x in data:
        t.add_row(str(x["id"]), str(x["user_id"]), x["name"], x["prefix"] + "…",
                  when(x["created_at"]), when(x["last_used_at"]), when(x["expires_at"]),
                  when(x["revoked_at"]), f"#{x['parent_id']}" if x["parent_id"] else "")
    console.print(t)


@token_app.command("revoke")
def token_revoke(token_id: int = typer.Argument(...)) -> None:
    """Revoke a token (and every token created with it)."""
    data = run(lambda c: c.revoke_token(token_id))
    console.print(f"token #{data['id']} revoked at {when(data['revoked_at'])}")
