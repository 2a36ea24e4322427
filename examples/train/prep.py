"""Check data/points.csv and split it: out/train.csv and out/test.csv (every fifth row)."""

import csv
from pathlib import Path

with Path("data/points.csv").open(newline="") as src:
    rows = list(csv.DictReader(src))
bad = [r for r in rows if not r["x"] or not r["y"]]
if bad:
    raise SystemExit(f"{len(bad)} rows have a missing value")
out = Path("out")
out.mkdir(exist_ok=True)
for name, part in (("train", [r for i, r in enumerate(rows) if i % 5]),
                   ("test", rows[::5])):
    with (out / f"{name}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["x", "y"])
        writer.writeheader()
        writer.writerows(part)
print(f"{len(rows)} rows checked: {len(rows) - len(rows[::5])} to train, {len(rows[::5])} to test")
