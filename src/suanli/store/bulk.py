"""Fast bulk inserts. On PostgreSQL rows go in with COPY (one round trip for thousands of rows;
an executemany there sends a statement per row); elsewhere, and when ids must come back, an
executemany (SQLAlchemy batches it into multi-row INSERT … RETURNING)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import JSON, ColumnElement, Table, any_, insert, literal, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from .models import Base

T = TypeVar("T")
CHUNK = 500  # ids per IN (...) list: under every database's limit on bound parameters


def chunks(items: Sequence[T], size: int = CHUNK) -> list[Sequence[T]]:
    """`items` in slices of at most `size`, for IN (...) lists."""
    return [items[i:i + size] for i in range(0, len(items), size)]


def among(s: Session, column: Any, values: Sequence[Any]) -> list[ColumnElement[bool]]:
    """Conditions that together pick the rows whose `column` is one of `values` (run one query
    per condition): on PostgreSQL one `= ANY(array)` (a single bound parameter, so the statement
    is compiled once and cached), elsewhere IN lists of at most CHUNK values."""
    if not values:
        return []
    if s.get_bind().dialect.name == "postgresql":
        return [column == any_(literal(list(values), ARRAY(column.type)))]
    return [column.in_(part) for part in chunks(values)]


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
    given = [(c, _copy_json if c in as_json else _copy_text) for c in rows[0]]
    tail = "".join("\t" + (_copy_json if c in as_json else _copy_text)(defaults[c]) for c in defaults)
    raw = s.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(cols)}) FROM STDIN") as copy:
        for part in chunks(rows, 5000):
            # COPY's text format, built here: psycopg's write_row costs ~3x as much per row.
            copy.write("".join("\t".join([f(r[c]) for c, f in given]) + tail + "\n" for r in part))
    return []


_ESCAPE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(v: Any) -> str:
    """One value in COPY's text format (NULL is \\N; backslash, tab and line ends escaped)."""
    if v is None:
        return "\\N"
    if isinstance(v, str):
        return v.translate(_ESCAPE)
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v).translate(_ESCAPE)


def _copy_json(v: Any) -> str:
    return "\\N" if v is None else json.dumps(v, ensure_ascii=False).translate(_ESCAPE)


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
