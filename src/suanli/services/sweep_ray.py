"""A twin sweep's points as jobs on a Ray cluster, through the same Jobs API the Ray connector uses.

The twin needs only the standard library, PyYAML (which Ray itself depends on) and suanli's own
`domain`, `scheduling` and `sim` packages; those, the sweep's points and every trace they read
are zipped into one Ray package (uploaded once, `RayConnector.upload_folder`). Each point is one
Ray job on one CPU (`python -m suanli.sim.sweep points.json K`), so the cluster runs as many at
once as it has CPUs; a job prints its result on one marked line of its log. A job that fails
fails the sweep, with the end of its log in the message.
"""

from __future__ import annotations

import json
import secrets
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..connectors.ray import RayConnector
from ..domain.enums import RunState
from ..domain.errors import ConnectorError
from ..sim.sweep import RESULT_MARK, Sweep, SweepError, apply

PACKAGES = ("domain", "scheduling", "sim")  # what the twin imports of suanli
POLL_S = 0.5


def _package(work: Path) -> None:
    src = Path(__file__).resolve().parents[1]  # the suanli package
    dst = work / "suanli"
    dst.mkdir()
    shutil.copyfile(src / "__init__.py", dst / "__init__.py")
    for sub in PACKAGES:
        shutil.copytree(src / sub, dst / sub, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _points(sweep: Sweep, work: Path) -> dict[str, Any]:
    """The points' scenarios, their traces copied into the package and named relative to it."""
    traces: dict[str, str] = {}
    (work / "traces").mkdir()
    points = []
    for pt in sweep.points:
        data = apply(sweep.scenario, pt)
        for wl in data.get("workloads", []):
            path = wl.get("trace")
            if not isinstance(path, str):
                continue
            if path not in traces:
                name = f"traces/{len(traces)}-{Path(path).name}"
                try:
                    shutil.copyfile(path, work / name)
                except OSError as exc:
                    raise SweepError(f"cannot read the trace {path}: {exc.strerror or exc}") from exc
                traces[path] = name
            wl["trace"] = traces[path]
        points.append(data)
    return {"points": points, "policies": sweep.policies, "base": "."}


def run_on_ray(url: str, sweep: Sweep, *, python: str = "python3", timeout_s: float = 3600,
               progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Every point of the sweep as a Ray job on the cluster whose Jobs API is at `url`; the
    results in point order."""
    home = Path(tempfile.mkdtemp(prefix="suanli-sweep-"))
    ray = RayConnector({"url": url, "timeout_s": 30}, home)
    try:
        work = home / "work"
        work.mkdir()
        _package(work)
        (work / "points.json").write_text(json.dumps(_points(sweep, work)), encoding="utf-8")
        ids: list[str] = []
        results: dict[str, dict[str, Any]] = {}
        try:
            uri = ray.upload_folder(work)
            tag = secrets.token_hex(4)
            for k in range(len(sweep.points)):
                ids.append(ray.submit_task(f"suanli-sweep-{tag}-{k}",
                                           f"{shlex.quote(python)} -m suanli.sim.sweep points.json {k}", uri))
            _collect(ray, ids, results, timeout_s, progress)
            return [results[sid] for sid in ids]
        except BaseException as exc:
            for sid in ids:  # a failed or interrupted sweep leaves nothing running on the cluster
                if sid not in results:
                    try:
                        ray.cancel(sid)
                    except ConnectorError:
                        pass
            if isinstance(exc, ConnectorError):
                raise SweepError(f"Ray at {url}: {exc.message}") from exc
            raise
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _collect(ray: RayConnector, ids: Sequence[str], results: dict[str, dict[str, Any]], timeout_s: float,
             progress: Callable[[int], None] | None) -> None:
    """Wait for every job of `ids`, putting each one's result into `results`."""
    deadline = time.monotonic() + timeout_s
    while len(results) < len(ids):
        if time.monotonic() > deadline:
            raise SweepError(f"the sweep's Ray jobs did not finish in {timeout_s:g} s")
        for sid in ids:
            if sid in results:
                continue
            st = ray.status(sid)
            if st.state in (RunState.PENDING, RunState.RUNNING):
                continue
            log = ray.logs(sid).decode("utf-8", "replace")
            line = next((ln for ln in reversed(log.splitlines()) if ln.startswith(RESULT_MARK)), None)
            if st.state is not RunState.COMPLETED or line is None:
                tail = "\n".join(log.strip().splitlines()[-8:])
                raise SweepError(f"Ray job {sid} ended {st.state.value}: {st.reason or ''}\n{tail}")
            results[sid] = json.loads(line.removeprefix(RESULT_MARK))
            if progress is not None:
                progress(len(results))
        time.sleep(POLL_S)
