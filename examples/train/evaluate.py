"""The exact least-squares line on data/points.csv, to compare a trained model with; and, when
train.py's out/model.json is here (a DAG's train stage passes it on), that model's error on
out/test.csv (prep.py's held-out rows) or data/points.csv."""

import csv
import json
from pathlib import Path


def load(path: Path) -> list[tuple[float, float]]:
    with path.open(newline="") as src:
        return [(float(r["x"]), float(r["y"])) for r in csv.DictReader(src)]


pts = load(Path("data/points.csv"))
n = len(pts)
mx = sum(x for x, _ in pts) / n
my = sum(y for _, y in pts) / n
w = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
b = my - w * mx
mse = sum((w * x + b - y) ** 2 for x, y in pts) / n
result = {"w": w, "b": b, "mse": mse}
print(f"exact fit: y = {w:.3f}·x + {b:.3f} (mse {mse:.4f})")
trained = Path("out/model.json")
if trained.exists():
    model = json.loads(trained.read_text())
    test = Path("out/test.csv") if Path("out/test.csv").exists() else Path("data/points.csv")
    held = load(test)
    test_mse = sum((model["w"] * x + model["b"] - y) ** 2 for x, y in held) / len(held)
    result["model"] = {"w": model["w"], "b": model["b"], "test": str(test), "mse": test_mse}
    print(f"trained model: y = {model['w']:.3f}·x + {model['b']:.3f}, mse {test_mse:.4f} on "
          f"{len(held)} points of {test}")
Path("out").mkdir(exist_ok=True)
Path("out/exact.json").write_text(json.dumps(result, indent=2) + "\n")
