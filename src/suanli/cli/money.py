"""`suanli bill ...`: tenants' money and the ledger. 账务"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import typer
from rich.table import Table

from .common import Output, OutputOpt, console, emit_json, fail, run
from .format import yuan

bill_app = typer.Typer(help="Money: tenants' balances, deposits, the ledger. 账务", no_args_is_help=True)


def _fen(yuan_text: str) -> int:
    """'1234.56' yuan → 123456 fen, exactly (no floats)."""
    try:
        value = Decimal(yuan_text.replace(",", "").replace("¥", ""))
    except InvalidOperation:
        fail(f"not an amount in yuan: {yuan_text!r}")
    fen = value * 100
    if fen != fen.to_integral_value() or fen <= 0:
        fail(f"an amount is positive with at most 2 decimals (fen), not {yuan_text!r}")
    return int(fen)


def _account_table(a: dict[str, Any]) -> Table:
    t = Table(title=f"tenant {a['tenant_id']} 账户", show_header=False)
    t.add_row("prepaid 预付余额", yuan(a["prepaid_fen"]))
    t.add_row("owed 欠款", yuan(a["owed_fen"]))
    t.add_row("deposited 累计充值", yuan(a["deposited_fen"]))
    t.add_row("billed 累计消费", yuan(a["billed_fen"]))
    return t


@bill_app.command("balance")
def balance(tenant: int = typer.Argument(..., help="tenant id"), output: Output = OutputOpt) -> None:
    """A tenant's prepaid money, what it owes, and its totals."""
    data = run(lambda c: c.tenant_account(tenant))
    if output is Output.json:
        return emit_json(data)
    console.print(_account_table(data))


@bill_app.command("deposit")
def deposit(tenant: int = typer.Argument(..., help="tenant id"),
            amount: str = typer.Option(..., "--yuan", help="amount in yuan, e.g. 1000 or 99.50"),
            reference: str = typer.Option(..., help="the payment's reference (makes it idempotent)"),
            output: Output = OutputOpt) -> None:
    """Record money a tenant paid in (platform admin)."""
    fen = _fen(amount)
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
