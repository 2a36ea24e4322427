"""The exact least-squares line on data/points.csv, to compare a trained model with."""

import csv
import json
from pathlib import Path

with Path("data/points.csv").open(newline="") as src:
    pts = [(float(r["x"]), float(r["y"])) for r in csv.DictReader(src)]
n = len(pts)
mx = sum(x for x, _ in pts) / n
my = sum(y for _, y in pts) / n
w = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
b = my - w * mx
mse = sum((w * x + b - y) ** 2 for x, y in pts) / n
Path("out").mkdir(exist_ok=True)
Path("out/exact.json").write_text(json.dumps({"w": w, "b": b, "mse": mse}, indent=2) + "\n")
print(f"exact fit: y = {w:.3f}·x + {b:.3f} (mse {mse:.4f})")
