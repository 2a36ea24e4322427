"""Immediate sessions (`Database.session(immediate=True)`): on SQLite the threads of one process
take the write lock one at a time (waiting on a lock of ours, not in SQLite's sleeping busy
handler), and what they write all lands."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import text

from suanli.store.db import Database


def test_writers_of_one_process_take_turns(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    with db.session() as s:
        s.execute(text("CREATE TABLE t (n INTEGER)"))
    inside, leave, second_in = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with db.session(immediate=True) as s:
            s.execute(text("INSERT INTO t VALUES (1)"))
            inside.set()
            assert leave.wait(30)

    def second() -> None:
        with db.session(immediate=True) as s:
            second_in.set()
            s.execute(text("INSERT INTO t VALUES (2)"))

    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(first)
        assert inside.wait(30)
        b = pool.submit(second)
        assert not second_in.wait(0.5)  # waits its turn while the first is writing
        leave.set()
        a.result(30)
        b.result(30)
    assert second_in.is_set()
    with db.session() as s:
        assert sorted(s.scalars(text("SELECT n FROM t"))) == [1, 2]
    db.dispose()
