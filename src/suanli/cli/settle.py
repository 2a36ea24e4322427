"""`suanli settle` and `suanli audit ...`: the month's settlement and the tamper-evident log."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..client import Client
from .common import Output, OutputOpt, console, emit_json, err_console, fail, run
from .format import when, yuan
from .money import statement_table

audit_app = typer.Typer(help="The tamper-evident audit log. 审计日志", no_args_is_help=True)
FILES = {"center": "centers", "tenant": "invoices", "city": "city"}


def _csv(c: Client, *, month: str, party: str) -> str:
    text: str = c.statements(month, party=party, fmt="csv")
    return text


def settle(month: str = typer.Option(..., help="a month that is over, e.g. 2026-11"),
           out: Path | None = typer.Option(None, help="write the statements here (CSV and JSON per party)"),
           preview: bool = typer.Option(False, "--preview", help="the statements of any month so far, "
                                        "neither stored nor paid"),
           output: Output = OutputOpt) -> None:
    """Settle a month (platform admin): statements per center, invoices per tenant, the city's
    voucher payment; the payments are posted to the ledger. Idempotent."""
    data = run(lambda c: c.settle(month, preview))
    if out is not None and not preview:
        out.mkdir(parents=True, exist_ok=True)
        for party, name in FILES.items():
            items = [i for i in data["items"] if i["party"] == party]
            (out / f"{name}-{month}.json").write_text(json.dumps(items, ensure_ascii=False, indent=2),
                                                      encoding="utf-8")
            text: str = run(partial(_csv, month=month, party=party))
            (out / f"{name}-{month}.csv").write_text(text, encoding="utf-8")
    if output is Output.json:
        return emit_json(data)
    title = f"settlement {month} 月度结算" + (" (preview 预览: not stored, not paid)" if preview else "")
    console.print(statement_table(title, data["items"]))
    tot = data["totals"]
    runs = f"{tot['runs']} run" + ("" if tot["runs"] == 1 else "s")
    console.print(f"{runs}; centers are paid {yuan(tot['gross_fen'])}, "
                  f"of which vouchers {yuan(tot['voucher_fen'])}"
                  + (f"; files in {out}" if out else ""), highlight=False)


@audit_app.command("verify")
def verify(output: Output = OutputOpt) -> None:
    """Walk the hash chain and the ledger; exit 0 when intact, 1 naming the first bad entry."""
    data = run(lambda c: c.audit_verify())
    if output is Output.json:
        emit_json(data)
    elif data["ok"]:
        console.print(f"audit log intact: {data['entries']} entries, head {data['head_hash'][:16]}…, "
                      "sealed under this platform's audit key; the ledger matches it", highlight=False)
    else:
        for problem in data["problems"]:
            label = "unsealed" if "seal" in problem else "tampered"
            err_console.print(f"[bold red]{label}:[/] {problem}", highlight=False)
    if not data["ok"]:
        raise typer.Exit(1)


@audit_app.command("seal")
def seal(output: Output = OutputOpt) -> None:
    """Seal the log again under this platform's audit key (platform admin): after an upgrade or a
    deliberate key change. Run where the audit key is (the server's SUANLI_AUDIT_KEY or
    $SUANLI_HOME/audit.key): the request proves it. Refused unless the chain and the ledger
    verify; recorded in the log."""
    from ..config import default_home
    from ..services.audit import reseal_proof
    from ..services.context import AUDIT_KEY_ENV
    from ..services.keys import existing_key

    key = existing_key(default_home(), AUDIT_KEY_ENV, "audit.key")
    if key is None:
        fail("no audit key here: run `suanli audit seal` where the server's key is "
             f"(SUANLI_AUDIT_KEY, or {default_home() / 'audit.key'})")

    def sealed(c: Client) -> Any:
        return c.audit_seal(reseal_proof(key, c.audit_verify()["head_hash"]))

    data = run(sealed)
    if output is Output.json:
        return emit_json(data)
    console.print(f"audit log sealed: {data['entries']} entries, head {data['head_hash'][:16]}…",
                  highlight=False)


@audit_app.command("log")
def log(limit: int = typer.Option(30, min=1, max=1000), output: Output = OutputOpt) -> None:
    """The newest audit entries (platform admin, auditor)."""
    data = run(lambda c: c.audit_log(limit=limit))
    if output is Output.json:
        return emit_json(data)
    t = Table(title=f"audit log 审计日志 ({data['total']} entries)")
    for col in ("id", "at", "actor", "action", "subject", "hash"):
        t.add_column(col)
    for e in data["items"]:
        t.add_row(str(e["id"]), when(e["at"]), e["actor"], e["action"], e["subject"], e["hash"][:12] + "…")
    console.print(t)
