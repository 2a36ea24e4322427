"""Fit y = w·x + b to data/points.csv by gradient descent (standard library only).

Reads EPOCHS and LEARNING_RATE from the environment; in an array job, SUANLI_ARRAY_INDEX picks
the learning rate from a small grid. Trains on out/train.csv when it is there (prep.py's split,
which a DAG's preprocess stage passes on), else on data/points.csv. Writes out/model.json and
out/metrics.csv.
"""

import csv
import json
import os
import sys
from pathlib import Path

RATES = [0.001, 0.002, 0.003, 0.005, 0.007, 0.01, 0.015, 0.02, 0.025, 0.03]


def load(path: Path) -> list[tuple[float, float]]:
    with path.open(newline="") as f:
        return [(float(r["x"]), float(r["y"])) for r in csv.DictReader(f)]


def main() -> int:
    split = Path("out/train.csv")
    data_file = Path(os.environ.get("DATA") or (split if split.exists() else "data/points.csv"))
    if not data_file.exists():
        print(f"no {data_file} in {Path.cwd()}: was the work folder staged?", file=sys.stderr)
        return 2
    points = load(data_file)
    epochs = int(os.environ.get("EPOCHS", "200"))
    index = os.environ.get("SUANLI_ARRAY_INDEX")
    rate = RATES[int(index) % len(RATES)] if index is not None else \
        float(os.environ.get("LEARNING_RATE", "0.02"))
    w = b = 0.0
    n = len(points)
    out = Path("out")
    out.mkdir(exist_ok=True)
    with (out / "metrics.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "mse"])
        for epoch in range(1, epochs + 1):
            gw = sum((w * x + b - y) * x for x, y in points) * 2 / n
            gb = sum((w * x + b - y) for x, y in points) * 2 / n
            w, b = w - rate * gw, b - rate * gb
            mse = sum((w * x + b - y) ** 2 for x, y in points) / n
            writer.writerow([epoch, f"{mse:.6f}"])
    model = {"w": round(w, 6), "b": round(b, 6), "mse": round(mse, 6), "epochs": epochs,
             "learning_rate": rate, "points": n, "data": str(data_file), "array_index": index}
    (out / "model.json").write_text(json.dumps(model, indent=2) + "\n")
    print(f"trained on {n} points of {data_file}: y = {w:.3f}·x + {b:.3f} (mse {mse:.4f}, "
          f"rate {rate})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
