"""The ledger's rules: an entry balances to zero in whole fen, or it is refused; a reversal undoes it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.ledger import Entry, LedgerError, Posting, check, reversal
from suanli.ledger.entries import bill

accounts = st.sampled_from(["tenant:1:receivable", "tenant:2:receivable", "center:1:payable",
                            "center:2:payable", "vouchers:2026:budget"])
amounts = st.integers(-10**12, 10**12).filter(lambda a: a != 0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(accounts, amounts), min_size=1, max_size=8))
def test_balanced_entries_pass_and_unbalanced_ones_are_refused(legs: list[tuple[str, int]]) -> None:
    postings = tuple(Posting(a, x) for a, x in legs)
    total = sum(x for _, x in legs)
    balanced = postings + ((Posting("platform:suspense", -total),) if total else ())
    check(Entry("t", "k:1", balanced)) if len(balanced) >= 2 else None
    if total and len(postings) >= 2:
        with pytest.raises(LedgerError, match=f"sum to {total} fen"):
            check(Entry("t", "k:1", postings))
    if len(balanced) >= 2:
        undo = reversal(Entry("t", "k:1", balanced), "k:1:undo")
        check(undo)
        assert [p.amount_fen for p in undo.postings] == [-p.amount_fen for p in balanced]


@pytest.mark.parametrize(("postings", "message"), [
    ((Posting("tenant:1:receivable", 10),), "at least two postings"),
    ((Posting("tenant:1:receivable", 10), Posting("center:1:payable", -9)), "sum to 1 fen"),
    ((Posting("tenant:1:receivable", 0), Posting("center:1:payable", 0)), "a posting of 0 fen"),
    ((Posting("tenant:1:receivable", 1.5), Posting("center:1:payable", -1.5)), "whole fen"),  # type: ignore[arg-type]
    ((Posting("Tenant 1", 5), Posting("center:1:payable", -5)), "not an account code"),
    ((Posting("tenant:1:receivable", 10**16), Posting("center:1:payable", -10**16)), "out of range"),
])
def test_each_rule_names_itself(postings: tuple[Posting, ...], message: str) -> None:
    with pytest.raises(LedgerError, match=message):
        check(Entry("t", "k:2", postings))


def test_a_bill_moves_the_amount_from_tenant_to_center() -> None:
    entry = bill(7, tenant_id=3, center_id=5, amount_fen=1234)
    assert entry is not None and entry.key == "bill:run:7"
    check(entry)
    assert {p.account: p.amount_fen for p in entry.postings} == {"tenant:3:receivable": 1234,
                                                                 "center:5:payable": -1234}
    assert bill(8, 3, 5, 0) is None
