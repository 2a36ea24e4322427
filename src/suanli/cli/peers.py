"""`suanli peer` commands: the platforms this one lends to and borrows from (federation)."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from .common import Output, OutputOpt, console, emit_json, fail, run
from .format import fen_from_yuan, when, yuan

peer_app = typer.Typer(help="Peer platforms: lend to and borrow from other suanli platforms "
                            "(算力互联互通). See docs/federation.md.")


@peer_app.command("invite")
def peer_invite(
    name: str = typer.Argument(..., help="the peer's name here, e.g. yantai"),
    credit_limit: str = typer.Option("0", "--credit-limit", help="what it may owe between "
                                     "settlements, in yuan"),
    output: Output = OutputOpt,
) -> None:
    """Lend to a peer: create its platform account and print its join token (once)."""
    try:
        limit_fen = fen_from_yuan(credit_limit, "--credit-limit", zero=True)
    except ValueError as exc:
        fail(str(exc))
    data = run(lambda c: c.invite_peer(name, limit_fen))
    if output is Output.json:
        return emit_json({"name": data["name"], "token": data["token"]})
    console.print(f"peer [bold]{data['name']}[/] invited (platform account, tenant "
                  f"{data['tenant_id']}). Its join token, shown only now:")
    print(data["token"])
    console.print(f"On {data['name']}: suanli peer add <our name> --url <our https URL> "
                  "--token <the token>", style="dim")


@peer_app.command("add")
def peer_add(
    name: str = typer.Argument(..., help="the peer's name here (becomes its center's slug)"),
    url: str = typer.Option(..., "--url", help="its base URL: https (http only to 127.0.0.1)"),
    token: str = typer.Option(..., "--token", help="the join token it invited us with"),
    report: bool = typer.Option(False, "--report", help="report our capacity and monthly usage "
                                "totals to it (a parent node)"),
    margin: float = typer.Option(0.0, "--margin", help="our margin on its prices, in percent "
                                 "(0: pass-through)"),
    output: Output = OutputOpt,
) -> None:
    """Borrow from a peer: add it as a center whose pools are the ones it offers."""
    if not 0 <= margin <= 100:
        fail("--margin: a percentage from 0 to 100")
    data = run(lambda c: c.add_peer(name, url, token, report=report,
                                    margin_bp=round(margin * 100)))
    if output is Output.json:
        return emit_json(data)
    console.print(f"peer [bold]{data['name']}[/] ({data['network_id']}) added as center "
                  f"{data['center']} with {data['pools']} pools")


def _table(peers: list[dict[str, Any]]) -> Table:
    t = Table(title="peer platforms 对等平台")
    for col in ("peer", "direction", "network id", "status", "pools", "margin", "url",
                "discovered"):
        t.add_column(col)
    for p in peers:
        lends = p["direction"] == "lends"
        t.add_row(p["name"], "lends to us 借入" if lends else "borrows ours 借出",
                  p["network_id"] or "-", p["status"], str(p["pools"]) if lends else "-",
                  f"{p['margin_bp'] / 100:g}%" if lends else "-", p["url"] or "-",
                  (when(p["discovered_at"]) if p["discovered_at"] else "-")
                  + (f"\n[red]{p['discovery_error']}[/]" if p["discovery_error"] else ""))
    return t


@peer_app.command("list")
def peer_list(output: Output = OutputOpt) -> None:
    """The peers this platform lends to and borrows from."""
    peers = run(lambda c: c.list_peers())["items"]
    if output is Output.json:
        return emit_json(peers)
    if not peers:
        console.print("no peers yet: suanli peer invite NAME (to lend) or suanli peer add NAME "
                      "--url URL --token TOKEN (to borrow)")
        return
    console.print(_table(peers))


@peer_app.command("show")
def peer_show(name: str = typer.Argument(...), output: Output = OutputOpt) -> None:
    """One peer, each way it is one."""
    peers = run(lambda c: c.get_peer(name))["ways"]
    if output is Output.json:
        return emit_json(peers)
    console.print(_table(peers))


@peer_app.command("discover")
def peer_discover(name: str = typer.Argument(...), output: Output = OutputOpt) -> None:
    """Ask a peer that lends to us for its pools now."""
    data = run(lambda c: c.discover_peer(name))
    if output is Output.json:
        return emit_json(data)
    console.print(f"peer {name}: {data['changed']} pools changed")


@peer_app.command("remove")
def peer_remove(name: str = typer.Argument(...), output: Output = OutputOpt) -> None:
    """End a peer both ways: its center goes offline, its account here is disabled."""
    data = run(lambda c: c.remove_peer(name))
    if output is Output.json:
        return emit_json(data)
    console.print(f"peer {name} removed ({', '.join(p['direction'] for p in data['ways'])})")


@peer_app.command("statement")
def peer_statement(name: str = typer.Argument(...),
                   month: str = typer.Option(..., "--month", help="e.g. 2026-11"),
                   output: Output = OutputOpt) -> None:
    """The month with a peer, run by run: what it borrowed from us, what we borrowed from it."""
    data = run(lambda c: c.statements(month, party=f"peer:{name}"))
    if output is Output.json:
        return emit_json(data)
    for side, title in (("lent", "it borrowed from us 借出"), ("borrowed", "we borrowed 借入")):
        part = data.get(side)
        if part is None:
            continue
        t = Table(title=f"{name} {month}: {title}")
        for col in ("run", "peer job", "ended", "unit·h", "amount"):
            t.add_column(col)
        for i in part["items"]:
            t.add_row(i["run_key"] or "-", str(i["job_id"]), when(i["ended_at"]),
                      f"{i['unit_seconds'] / 3600:.3f}", yuan(i["amount_fen"]))
        t.add_row("total", "", "", f"{part['unit_seconds'] / 3600:.3f}", yuan(part["amount_fen"]))
        console.print(t)
        if side == "borrowed":
            console.print(f"billed to our tenants {yuan(part['billed_fen'])}, margin "
                          f"{yuan(part['margin_fen'])}")


@peer_app.command("reconcile")
def peer_reconcile(name: str = typer.Argument(...),
                   month: str = typer.Option(..., "--month", help="e.g. 2026-11"),
                   output: Output = OutputOpt) -> None:
    """Compare what we borrowed from a peer in a month with what it says it lent us; exit 1 when
    any run differs (and name it)."""
    data = run(lambda c: c.reconcile_peer(name, month))
    if output is Output.json:
        emit_json(data)
    elif data["same"]:
        console.print(f"peer {name} {month}: the same {data['runs']} runs and "
                      f"{yuan(data['ours_fen'])} on both sides ✓")
    else:
        t = Table(title=f"peer {name} {month}: {len(data['differences'])} runs differ")
        for col in ("run", "ours", "theirs", "why"):
            t.add_column(col)
        for d in data["differences"]:
            t.add_row(d["run_key"], "-" if d["ours_fen"] is None else yuan(d["ours_fen"]),
                      "-" if d["theirs_fen"] is None else yuan(d["theirs_fen"]), d["why"])
        console.print(t)
        console.print(f"ours {yuan(data['ours_fen'])}, theirs {yuan(data['theirs_fen'])}")
    if not data["same"]:
        raise typer.Exit(1)
