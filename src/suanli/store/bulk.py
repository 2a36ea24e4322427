"""Fast bulk inserts. On PostgreSQL rows go in with COPY (one round trip for thousands of rows;
an executemany there sends a statement per row); elsewhere, and when ids must come back, an
executemany (SQLAlchemy batches it into multi-row INSERT … RETURNING)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import JSON, Table, insert, text
from sqlalchemy.orm import Session

from .models import Base

T = TypeVar("T")
CHUNK = 500  # ids per IN (...) list: under every database's limit on bound parameters


def chunks(items: Sequence[T], size: int = CHUNK) -> list[Sequence[T]]:
    """`items` in slices of at most `size`, for IN (...) lists."""
    return [items[i:i + size] for i in range(0, len(items), size)]


def insert_rows(s: Session, model: type[Base], rows: Sequence[dict[str, Any]],
                returning: Sequence[str] = ()) -> list[tuple[Any, ...]]:
    """Insert `rows` (dicts with the same keys) in the session's transaction; with `returning`,
    the given columns of every inserted row (in no guaranteed order: return a key)."""
    if not rows:
        return []
    table = cast(Table, model.__table__)
    postgres = s.get_bind().dialect.name == "postgresql"
    if returning and postgres and "id" not in rows[0]:
        # Take the ids from the table's sequence in one statement, then COPY the rows with them.
        ids = s.execute(text(f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id')) "
                             "FROM generate_series(1, :n)"), {"n": len(rows)}).scalars().all()
        rows = [{**r, "id": i} for r, i in zip(rows, ids, strict=True)]
        insert_rows(s, model, rows)
        return [tuple(r[c] for c in returning) for r in rows]
    if returning:
        stmt = insert(table).returning(*(table.c[c] for c in returning))
        return [tuple(r) for r in s.execute(stmt, list(rows))]
    if not postgres:
        s.execute(insert(table), list(rows))
        return []
    cols = list(rows[0])
    # COPY applies no Python-side defaults: give every omitted column its scalar default.
    defaults = {c.name: c.default.arg for c in table.c  # type: ignore[attr-defined]
                if c.name not in rows[0] and c.default is not None and c.default.is_scalar}
    cols += list(defaults)
    as_json = {c for c in cols if isinstance(table.c[c].type, JSON)}
    raw = s.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(cols)}) FROM STDIN") as copy:
        for r in rows:
            values = [r[c] if c in r else defaults[c] for c in cols]
            copy.write_row([json.dumps(v, ensure_ascii=False) if c in as_json and v is not None else v
                            for c, v in zip(cols, values, strict=True)])
    return []


def bump(s: Session, model: type[Base], column: str, deltas: dict[int, int], *,
         release: bool = False) -> None:
    """Add each row's delta to an integer column in one statement (PostgreSQL: a join with the
    unnested arrays) or one executemany (SQLite). With `release`, subtract instead, never below 0,
    and only from rows above 0 (holds being released)."""
    if not deltas:
        return
    table = cast(Table, model.__table__).name
    ids = sorted(deltas)
    if s.get_bind().dialect.name == "postgresql":
        expr = f"GREATEST(t.{column} - v.d, 0)" if release else f"t.{column} + v.d"
        extra = f" AND t.{column} > 0" if release else ""
        s.execute(text(f"UPDATE {table} AS t SET {column} = {expr} FROM unnest(CAST(:ids AS bigint[]), "
                       f"CAST(:ds AS bigint[])) AS v(id, d) WHERE t.id = v.id{extra}"),
                  {"ids": ids, "ds": [deltas[i] for i in ids]})
        return
    expr = f"MAX({column} - :d, 0)" if release else f"{column} + :d"
    extra = f" AND {column} > 0" if release else ""
    s.execute(text(f"UPDATE {table} SET {column} = {expr} WHERE id = :id{extra}"),
              [{"id": i, "d": deltas[i]} for i in ids])
