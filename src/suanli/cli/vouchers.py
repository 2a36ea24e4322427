"""`suanli voucher ...`: the compute-voucher programme (算力券). Amounts in yuan here; fen in the API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from .admin import resolve_center
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
from .format import day, grid, hours, number, pfh, when, yuan
from .money import fen_of

voucher_app = typer.Typer(help="Compute vouchers 算力券: programmes, applications, review, grants, "
                          "reports.", no_args_is_help=True)
programme_app = typer.Typer(help="Voucher programmes and their rules. 算力券计划", no_args_is_help=True)
voucher_app.add_typer(programme_app, name="programme")


def _rules(text: str | None, path: Path | None) -> dict[str, Any] | None:
    if text and path:
        fail("give --rules or --rules-file, not both")
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror}")
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        fail(f"rules are JSON: {exc}")
    if not isinstance(data, dict):
        fail("rules are a JSON object, e.g. '{\"ratio_bp\": 2000}'")
    return data


def _programme_table(p: dict[str, Any]) -> Table:
    t = Table(title=f"programme {p['id']}: {p['name']}", show_header=False, title_justify="left")
    t.add_row("mode 模式", p["mode"])
    t.add_row("period 期间", f"{day(p['starts_at'])} → {day(p['ends_at'])}")
    t.add_row("budget 总额", yuan(p["budget_fen"]))
    t.add_row("available 可发放", yuan(p["available_fen"]))
    t.add_row("committed 已发放未使用", yuan(p["committed_fen"]))
    t.add_row("paid 已兑付", yuan(p["paid_fen"]))
    r = p["rules"]
    t.add_row(f"rules v{p['rules_version']} 规则",
              f"ratio {r['ratio_bp'] / 100:g} %, cap {yuan(r['tenant_cap_fen'])} per tenant, "
              f"min spend {yuan(r['min_spend_fen'])}, valid {r['validity_days']} days, "
              f"settles {r['settlement_period']}")
    for o in r["overrides"]:
        when = ", ".join(f"{k}={v}" for k, v in o.items() if k != "ratio_bp")
        t.add_row("  override", f"{when}: {o['ratio_bp'] / 100:g} %")
    if r["districts"] or r["credit_code_prefixes"]:
        who = [*r["districts"], *(c + "…" for c in r["credit_code_prefixes"])]
        t.add_row("  eligible 适用企业", ", ".join(who))
    if r["centers"]:
        t.add_row("  centers 白名单", ", ".join(r["centers"]))
    return t


@programme_app.command("create")
def programme_create(
    name: str = typer.Option(..., help="e.g. '2026 青岛算力券'"),
    year: int = typer.Option(..., help="the programme's year"),
    budget: str = typer.Option("20000000", "--budget", "--budget-yuan", help="the pool in yuan"),
    mode: str = typer.Option("point_of_sale", help="point_of_sale or post_hoc (奖补)"),
    rules: str | None = typer.Option(None, help="rules as JSON, e.g. '{\"ratio_bp\": 2000}'"),
    rules_file: Path | None = typer.Option(None, help="rules from a JSON file"),
    output: Output = OutputOpt,
) -> None:
    """Open a year's programme (platform admin)."""
    body = {"name": name, "year": year, "budget_fen": fen_of(budget, flag="--budget"), "mode": mode,
            "rules": _rules(rules, rules_file)}
    data = run(lambda c: c.create_programme(body))
    if output is Output.json:
        return emit_json(data)
    console.print(_programme_table(data))


@programme_app.command("list")
def programme_list(output: Output = OutputOpt) -> None:
    """Every programme and its pool."""
    data = run(lambda c: c.list_programmes())["items"]
    if output is Output.json:
        return emit_json(data)
    console.print(grid(
        "voucher programmes 算力券计划",
        ("id", "name", "mode", "budget", "available", "committed", "paid", "grants"),
        ((str(p["id"]), p["name"], p["mode"], yuan(p["budget_fen"]), yuan(p["available_fen"]),
          yuan(p["committed_fen"]), yuan(p["paid_fen"]), str(p["grants"])) for p in data),
        right=("id", "budget", "available", "committed", "paid", "grants")))


@programme_app.command("show")
def programme_show(programme: int = typer.Argument(..., help="programme id"),
                   output: Output = OutputOpt) -> None:
    """A programme, its rules (shown to every user) and its pool."""
    data = run(lambda c: c.get_programme(programme))
    if output is Output.json:
        return emit_json(data)
    console.print(_programme_table(data))


@programme_app.command("rules")
def programme_rules(programme: int = typer.Argument(..., help="programme id"),
                    rules: str | None = typer.Option(None, help="the new rules as JSON"),
                    rules_file: Path | None = typer.Option(None, help="the new rules from a JSON file"),
                    output: Output = OutputOpt) -> None:
    """Publish a new version of the rules (platform admin)."""
    new = _rules(rules, rules_file)
    if new is None:
        fail("give the new rules with --rules or --rules-file")
    data = run(lambda c: c.update_rules(programme, new))
    if output is Output.json:
        return emit_json(data)
    console.print(_programme_table(data))


def _applications_table(rows: list[dict[str, Any]]) -> Table:
    tenants = run(tenant_names) if rows else {}
    return grid(
        "voucher applications 申请",
        ("id", "programme", "tenant", "requested", "planned spend", "state", "approved", "grant",
         "reason"),
        ((str(a["id"]), str(a["programme_id"]), tenant_name(tenants, a["tenant_id"]),
          yuan(a["requested_fen"]),
          yuan(a["planned_spend_fen"]), a["state"], yuan(a["approved_fen"]),
          str(a["grant_id"] or "-"), a["reason"] or "-") for a in rows))


@voucher_app.command("apply")
def apply(programme: int = typer.Option(..., help="programme id"),
          amount: str = typer.Option(..., "--yuan", help="vouchers asked for, in yuan"),
          planned_spend: str = typer.Option(..., "--planned-spend-yuan", help="planned compute spend"),
          use: str = typer.Option(..., "--use", help="what the compute is for 用途"),
          output: Output = OutputOpt) -> None:
    """Apply for vouchers (tenant admin)."""
    body = {"programme_id": programme, "requested_fen": fen_of(amount),
            "planned_spend_fen": fen_of(planned_spend, flag="--planned-spend-yuan"), "planned_use": use}
    data = run(lambda c: c.apply_voucher(body))
    if output is Output.json:
        return emit_json(data)
    console.print(_applications_table([data]))


@voucher_app.command("applications")
def applications(programme: int | None = typer.Option(None, help="programme id"),
                 state: str | None = typer.Option(None, help="pending, approved, partly_approved, rejected"),
                 output: Output = OutputOpt) -> None:
    """Applications (a tenant sees its own; reviewers all)."""
    data = run(lambda c: c.list_applications(programme_id=programme, state=state))["items"]
    if output is Output.json:
        return emit_json(data)
    console.print(_applications_table(data))


@voucher_app.command("review")
def review(application: int = typer.Argument(..., help="application id"),
           approve: bool = typer.Option(False, "--approve", help="approve (all, or --yuan of it)"),
           reject: bool = typer.Option(False, "--reject", help="reject (with --reason)"),
           amount: str | None = typer.Option(None, "--yuan", help="approve only this much"),
           reason: str = typer.Option("", help="needed to reject or to approve a part"),
           output: Output = OutputOpt) -> None:
    """Approve, partly approve or reject an application (reviewer)."""
    if approve == reject:
        fail("give exactly one of --approve and --reject")
    body: dict[str, Any] = {"decision": "approve" if approve else "reject", "reason": reason}
    if amount is not None:
        body["approved_fen"] = fen_of(amount)
    data = run(lambda c: c.review_application(application, body))
    if output is Output.json:
        return emit_json(data)
    console.print(_applications_table([data]))


@voucher_app.command("grants")
def grants(programme: int | None = typer.Option(None, help="programme id"),
           tenant: int | None = typer.Option(None, help="tenant id"), output: Output = OutputOpt) -> None:
    """Grants and what is left of each."""
    data = run(lambda c: c.list_grants(programme_id=programme, tenant_id=tenant))["items"]
    if output is Output.json:
        return emit_json(data)
    tenants = run(tenant_names) if data else {}
    console.print(grid(
        "voucher grants 已发放",
        ("id", "programme", "tenant", "granted", "redeemed", "left", "expires", "state"),
        ((str(g["id"]), str(g["programme_id"]), tenant_name(tenants, g["tenant_id"]), yuan(g["amount_fen"]),
          yuan(g["redeemed_fen"]), yuan(g["left_fen"]), day(g["expires_at"]), g["state"])
         for g in data)))


@voucher_app.command("claim")
def claim(grant: int = typer.Argument(..., help="grant id"),
          period: str = typer.Option(..., help="a finished period: 2026-11 or 2026-Q4"),
          output: Output = OutputOpt) -> None:
    """Claim the post-hoc subsidy (奖补) on a period's fees (tenant admin)."""
    data = run(lambda c: c.claim(grant, period))
    if output is Output.json:
        return emit_json(data)
    console.print(f"claim {data['id']}: {data['runs']} runs, fees {yuan(data['fees_fen'])}, "
                  f"subsidy {yuan(data['amount_fen'])}")


@voucher_app.command("redemptions")
def redemptions(programme: int | None = typer.Option(None, help="programme id"),
                tenant: int | None = typer.Option(None, help="tenant id"),
                limit: int = typer.Option(50, min=1, max=1000), output: Output = OutputOpt) -> None:
    """Redemptions: the voucher's part of each bill."""
    data = run(lambda c: c.list_redemptions(programme_id=programme, tenant_id=tenant, limit=limit))
    if output is Output.json:
        return emit_json(data)
    slugs = run(center_slugs)
    tenants = run(tenant_names) if data["items"] else {}
    console.print(grid(
        f"redemptions 兑付 ({data['total']})",
        ("id", "run", "tenant", "center", "grant", "bill", "voucher", "ratio", "clawed back"),
        ((str(r["id"]), str(r["run_id"]), tenant_name(tenants, r["tenant_id"]),
          slugs.get(r["center_id"], "?"),
          str(r["grant_id"]), yuan(r["bill_fen"]), yuan(r["amount_fen"]),
          f"{r['ratio_bp'] / 100:g} %", when(r["clawed_back_at"])) for r in data["items"])))


@voucher_app.command("clawback")
def clawback(redemption: int = typer.Argument(..., help="redemption id"),
             reason: str = typer.Option(..., help="why it was improper"), output: Output = OutputOpt) -> None:
    """Claw back an improper redemption (auditor)."""
    data = run(lambda c: c.clawback(redemption, reason))
    if output is Output.json:
        return emit_json(data)
    console.print(f"redemption {data['id']} clawed back: {yuan(data['amount_fen'])} returns to the pool; "
                  f"tenant {data['tenant_id']} owes it")


@voucher_app.command("freeze")
def freeze(tenant: int = typer.Argument(..., help="tenant id"),
           reason: str = typer.Option(..., help="why"), undo: bool = typer.Option(False, "--undo",
                                                                                 help="unfreeze")) -> None:
    """Freeze a tenant's vouchers, or --undo (auditor)."""
    data = run(lambda c: c.unfreeze(tenant) if undo else c.freeze(tenant, reason))
    console.print(f"tenant {tenant}: " + ("frozen" if data["frozen_at"] else "not frozen"))


@voucher_app.command("related")
def related(tenant: int = typer.Argument(..., help="tenant id"),
            center: str = typer.Option(..., help="center slug, e.g. qd-ai"),
            relation: str = typer.Option(..., help="e.g. 'subsidiary 子公司'")) -> None:
    """Declare a center related to a tenant: vouchers never pay for runs there."""
    run(lambda c: c.declare_related(tenant, resolve_center(c, center)["id"], relation))
    console.print(f"tenant {tenant} and center {center} are related: no vouchers on runs there")


@voucher_app.command("report")
def report(programme: int = typer.Argument(..., help="programme id"),
           by: str = typer.Option("tenant", help="tenant, center, district, device_kind, domestic, month"),
           csv_out: Path | None = typer.Option(None, "--csv", help="also write the rows as CSV here"),
           output: Output = OutputOpt) -> None:
    """Where the money went, the pool's burn-down and P·h per yuan of subsidy."""
    data = run(lambda c: c.voucher_report(programme, by))
    if csv_out is not None:
        text = run(lambda c: c.voucher_report(programme, by, "csv"))
        csv_out.write_text(text, encoding="utf-8")
    if output is Output.json:
        return emit_json(data)
    t = Table(title=f"{data['name']} by {by}")
    for col in ("key", "runs", "bills", "vouchers", "P·h", "unit-hours"):
        t.add_column(col, justify="left" if col == "key" else "right")
    for r in data["rows"]:
        t.add_row(r["key"], str(r["runs"]), yuan(r["bill_fen"]), yuan(r["voucher_fen"]),
                  pfh(r["pflops_hours"]), hours(r["unit_hours"]))
    tot = data["totals"]
    t.add_row("[bold]total[/]", str(tot["runs"]), yuan(tot["bill_fen"]), yuan(tot["voucher_fen"]),
              pfh(tot["pflops_hours"]), "")
    console.print(t)
    per = tot["pflops_hours_per_yuan"]
    console.print(f"P·h per yuan of subsidy: {number(per, sig=3)}", highlight=False)
    console.print(grid(
        "burn-down 资金池消耗", ("month", "paid", "left", "even-spend plan"),
        ((b["month"], yuan(b["paid_fen"]), yuan(b["left_fen"]), yuan(b["plan_left_fen"]))
         for b in data["burn_down"]), right=("paid", "left", "even-spend plan")))
