"""`suanli bill ...`: tenants' money and the ledger. 账务"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..client import Client
from .admin import resolve_pool
from .common import Output, OutputOpt, center_slugs, console, emit_json, fail, run
from .format import fen_from_yuan, grid, hours, parse_time, pfh, when, yuan

bill_app = typer.Typer(help="Money: tenants' balances, deposits, the ledger. 账务", no_args_is_help=True)


def fen_of(yuan_text: str, *, zero: bool = False, flag: str = "--yuan") -> int:
    """'1234.56' yuan → 123456 fen, exactly (no floats); a CLI error naming `flag` otherwise."""
    try:
        return fen_from_yuan(yuan_text, flag, zero=zero)
    except ValueError as exc:
        fail(str(exc))


def _account_table(a: dict[str, Any]) -> Table:
    t = Table(title=f"tenant {a['tenant_id']} 账户", show_header=False)
    t.add_row("prepaid 预付余额", yuan(a["prepaid_fen"]))
    t.add_row("owed 欠款", yuan(a["owed_fen"]))
    t.add_row("deposited 累计充值", yuan(a["deposited_fen"]))
    t.add_row("billed 累计消费", yuan(a["billed_fen"]))
    t.add_row("credit limit 信用额度", yuan(a.get("credit_limit_fen")))
    t.add_row("held 冻结(未完成作业)", yuan(a.get("held_fen")))
    t.add_row("spendable 可用", yuan(a.get("spendable_fen")))
    return t


def _own_tenant(c: Client, tenant: int | None) -> int:
    """The tenant asked for, else the caller's own."""
    if tenant is not None:
        return tenant
    me = c.me()
    if me.get("tenant_id") is None:
        fail(f"you ({me['username']}, {me['role']}) belong to no tenant: name one, e.g. "
             "`suanli bill balance 1` (suanli tenant list)")
    return int(me["tenant_id"])


@bill_app.command("balance")
def balance(tenant: int | None = typer.Argument(None, help="tenant id (default: your own)"),
            output: Output = OutputOpt) -> None:
    """A tenant's prepaid money, what it owes, and its totals (yours unless you name one)."""
    data = run(lambda c: c.tenant_account(_own_tenant(c, tenant)))
    if output is Output.json:
        return emit_json(data)
    console.print(_account_table(data))


@bill_app.command("deposit")
def deposit(tenant: int = typer.Argument(..., help="tenant id"),
            amount: str = typer.Option(..., "--yuan", help="amount in yuan, e.g. 1000 or 99.50"),
            reference: str = typer.Option(..., help="the payment's reference (makes it idempotent)"),
            output: Output = OutputOpt) -> None:
    """Record money a tenant paid in (platform admin)."""
    fen = fen_of(amount)
    data = run(lambda c: c.deposit(tenant, fen, reference))
    if output is Output.json:
        return emit_json(data)
    console.print(_account_table(data))


@bill_app.command("trial-balance")
def trial_balance(output: Output = OutputOpt) -> None:
    """Every ledger account's balance; they sum to 0 (platform admin, auditor)."""
    data = run(lambda c: c.trial_balance())
    if output is Output.json:
        return emit_json(data)
    t = Table(title=f"trial balance 试算平衡 · {data['transactions']} transactions")
    t.add_column("account")
    t.add_column("balance (debit +)", justify="right")
    for a in data["accounts"]:
        t.add_row(a["account"], yuan(a["balance_fen"]))
    t.add_row("[bold]total[/]", f"[bold]{yuan(data['total_fen'])}[/]")
    console.print(t)


@bill_app.command("credit")
def credit(tenant: int = typer.Argument(..., help="tenant id"),
           amount: str = typer.Option(..., "--yuan", help="the credit limit in yuan (0: prepaid only)"),
           output: Output = OutputOpt) -> None:
    """Set what a tenant may owe beyond its prepaid money (platform admin)."""
    fen = fen_of(amount, zero=True)
    data = run(lambda c: c.set_credit_limit(tenant, fen))
    if output is Output.json:
        return emit_json(data)
    console.print(_account_table(data))


@bill_app.command("prices")
def prices(pool: str = typer.Argument(..., help="the pool: center/pool, e.g. qd-ai/ascend-910b "
                                      "(or its id)"), output: Output = OutputOpt) -> None:
    """A pool's price list: every version and when it is valid from."""
    data = run(lambda c: c.list_prices(resolve_pool(c, pool)))["items"]
    if output is Output.json:
        return emit_json(data)
    console.print(grid(
        f"pool {pool} price list 价目表", ("valid from", "per unit-hour", "note"),
        ((when(v["valid_from"]), yuan(v["price_fen_per_unit_hour"]), v["note"]) for v in data),
        right=("per unit-hour",)))


@bill_app.command("price")
def set_price(pool: str = typer.Argument(..., help="the pool: center/pool, e.g. qd-ai/ascend-910b "
                                         "(or its id)"),
              amount: str = typer.Option(..., "--yuan", help="yuan per unit-hour"),
              valid_from: str | None = typer.Option(None, "--from", help="from this date or time, "
                                                    "e.g. 2026-12-01 (midnight CST unless --tz) or "
                                                    "2026-12-01T00:00Z (default now; never in the past)"),
              note: str = typer.Option("", help="e.g. 'winter tariff'"), output: Output = OutputOpt) -> None:
    """Publish a new price for a pool (its center's operator, or a platform admin)."""
    body: dict[str, Any] = {"price_fen_per_unit_hour": fen_of(amount, zero=True), "note": note}
    if valid_from:
        try:
            body["valid_from"] = parse_time(valid_from, "--from").isoformat()
        except ValueError as exc:
            fail(str(exc))
    data = run(lambda c: c.set_price(resolve_pool(c, pool), body))
    if output is Output.json:
        return emit_json(data)
    console.print(f"pool {pool}: {yuan(data['price_fen_per_unit_hour'])} per unit-hour from "
                  f"{when(data['valid_from'])}", highlight=False)


def statement_table(title: str, items: list[dict[str, Any]]) -> Table:
    """Statements: centers by slug, tenants and programmes by id."""
    slugs = run(center_slugs) if any(i["party"] == "center" for i in items) else {}
    numbers = ("runs", "unit-hours", "P·h", "gross", "voucher", "adjust", "net")
    return grid(
        title, ("party", "name", *numbers),
        ((f"center {slugs.get(i['party_id'], '?')}" if i["party"] == "center"
          else f"{i['party']} {i['party_id']}", i["name"], str(i["runs"]), hours(i["unit_hours"]),
          pfh(i["pflops_hours"]), yuan(i["gross_fen"]), yuan(i["voucher_fen"]),
          yuan(i["adjustments_fen"]), yuan(i["net_fen"])) for i in items), right=numbers)


@bill_app.command("statements")
def statements(month: str = typer.Option(..., help="a settled month, e.g. 2026-11"),
               party: str | None = typer.Option(None, help="center, tenant or city"),
               csv_out: Path | None = typer.Option(None, "--csv", help="write them as CSV here"),
               output: Output = OutputOpt) -> None:
    """A settled month's statements (a tenant sees its invoice, an operator its center's)."""
    data = run(lambda c: c.statements(month, party=party))
    if not data["settled"]:
        if output is Output.json:
            return emit_json(data)
        _not_settled(month)
    if csv_out is not None:
        csv_out.write_text(run(lambda c: c.statements(month, party=party, fmt="csv")), encoding="utf-8")
    if output is Output.json:
        return emit_json(data)
    console.print(statement_table(f"statements {month} 月度结算单", data["items"]))


def _not_settled(month: str) -> None:
    """What each role can do about a month not settled yet: the platform admin settles it (or
    previews it); a tenant or a center operator sees its month so far."""
    me = run(lambda c: c.me())
    if me["role"] == "platform_admin":
        fail(f"{month} is not settled yet: `suanli settle --month {month} --preview` shows it so "
             f"far; `suanli settle --month {month}` settles it once it is over")
    if me.get("tenant_id") is not None or me["role"] == "center_operator":
        data = run(lambda c: c.bills(24))
        so_far = [i for i in data["items"] if i["month"] == month]
        if so_far:
            console.print(statement_table(f"{month} so far 本月至今 (not settled yet: the figures "
                                          "may still change)", so_far))
            console.print(f"[dim]{month} is settled by the platform after the month ends; "
                          "`suanli bill history` shows every month.[/]", highlight=False)
            raise typer.Exit(0)
        fail(f"{month} is not settled yet, and you have no usage in it so far "
             "(`suanli bill history` shows your months)")
    fail(f"{month} is not settled yet; the platform settles a month after it ends")


@bill_app.command("history")
def history(months: int = typer.Option(12, min=1, max=120, help="how many months back"),
            output: Output = OutputOpt) -> None:
    """Your own statements month by month (a tenant's invoices, an operator's center's);
    months not settled yet are shown so far."""
    data = run(lambda c: c.bills(months))
    if output is Output.json:
        return emit_json(data)
    items = data["items"]
    numbers = ("runs", "unit-hours", "P·h", "gross", "voucher", "adjust", "net")
    console.print(grid(
        f"{data['name']} · statements by month 月度账单", ("month", "settled", *numbers),
        ((i["month"], "yes 已结算" if i["settled"] else "so far 至今", str(i["runs"]),
          hours(i["unit_hours"]), pfh(i["pflops_hours"]), yuan(i["gross_fen"]),
          yuan(i["voucher_fen"]), yuan(i["adjustments_fen"]), yuan(i["net_fen"])) for i in items),
        right=numbers))
