"""The portal's Chinese for the services' sentences (web/reasons.py): every reason and message the
scheduler can write is found in its source and must come out Chinese; real explanations too; times
in the display zone; figures never in scientific notation."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from suanli.domain.enums import CenterStatus, DeviceKind
from suanli.domain.timefmt import display_zone, local_time
from suanli.web.app import plain_number
from suanli.web.reasons import reason, reasons

from .test_scheduler import NOW, explain_job, pool, req, spec

SRC = Path(__file__).resolve().parents[2] / "src" / "suanli"
# The sentences people read on a job page, by where they are written.
SOURCES = ["scheduling/placement.py", "domain/task.py", "services/queueing.py"]
CST = display_zone("Asia/Shanghai")
LATIN = re.compile(r"[A-Za-z]{3,}")
UNITS = {"GPU", "CPU", "NPU", "CST"}
# What a placeholder stands for in a sample sentence (by the expression's source): a real value
# of the kind, so that the pattern meant for it is the one that must match.
SAMPLES = {"how": "started", "policy": "balanced", "job.req.policy": "balanced",
           "held": "tenant quota: 7 of 8 gpu units in use, the job needs 2",
           "budget": "100", "spec.device_kind": "cpu", "res.device": "gpu", "req.precision": "fp64"}


def _sample(node: ast.expr) -> str | None:
    """A sentence from an f-string or string (placeholders filled in), or None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        out = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                out.append(str(part.value))
            elif isinstance(part, ast.FormattedValue):
                spec_ = ast.unparse(part.format_spec) if part.format_spec else ""
                if "%" in spec_:
                    out.append("2026-12-01 10:00")
                elif isinstance(part.value, ast.IfExp) and isinstance(part.value.body, ast.Constant):
                    out.append(str(part.value.body.value))  # e.g. a plural's "s"
                else:
                    out.append(SAMPLES.get(ast.unparse(part.value), "7"))
        return "".join(out)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left = _sample(node.left)
        right = "" if isinstance(node.right, ast.Name) else (_sample(node.right) or "7")  # a hint: none
        return None if left is None else left + right
    if isinstance(node, ast.IfExp):
        return _sample(node.body)
    if isinstance(node, ast.BoolOp):
        return _sample(node.values[0])
    return None


def sentences() -> list[tuple[str, str]]:
    """Every reason appended to a list of reasons, every decision message and every returned
    reason in the sources above, as a sample sentence with where it comes from."""
    found: list[tuple[str, str]] = []
    for rel in SOURCES:
        tree = ast.parse((SRC / rel).read_text())
        in_reasons = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and "reason" in f.name
                      for n in ast.walk(f)}
        for node in ast.walk(tree):
            exprs: list[ast.expr] = []
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "append" and node.args \
                    and ast.unparse(node.func.value).split(".")[-1] in ("reasons", "why"):
                exprs = [node.args[0]]
            elif isinstance(node, ast.Assign) and \
                    any(ast.unparse(t).endswith(".message") for t in node.targets):
                exprs = [node.value]
            elif isinstance(node, ast.Return) and isinstance(node.value, ast.List) and id(node) in in_reasons:
                exprs = list(node.value.elts)
            elif isinstance(node, ast.Return) and isinstance(node.value, ast.JoinedStr) \
                    and "quota" in ast.unparse(node.value):
                exprs = [node.value]
            for e in exprs:
                text = _sample(e)
                if text and LATIN.search(text):
                    found.append((f"{rel}:{e.lineno}", text))
    return found


def test_the_sources_are_scanned() -> None:
    got = [text for _, text in sentences()]
    assert len(got) >= 25, got  # the scan finds the scheduler's sentences, not nothing
    assert "cannot free enough units" in got and "center is offline" in got


@pytest.mark.parametrize(("where", "text"), sentences())
def test_every_scheduler_sentence_is_chinese(where: str, text: str) -> None:
    zh = reason(text, "zh", CST)
    left = set(LATIN.findall(zh)) - UNITS
    assert not left, f"{where}: {text!r} → {zh!r}"
    assert reason(text, "en", CST) == text  # English is the service's own sentence


def test_real_explanations_come_out_chinese() -> None:
    pools = [
        pool(1, spec(device_kind=DeviceKind.CPU, device_model="Xeon", tflops_fp16=None)),
        pool(2, spec(device_model="Ascend", device_kind=DeviceKind.NPU, domestic=True)),
        pool(3, spec(units_per_node=4)),
        pool(4, spec(max_walltime_s=60)),
        pool(5, center_status=CenterStatus.OFFLINE),
        pool(6, center_status=CenterStatus.DRAINING),
        pool(7, district="黄岛区"),
        pool(8, spec(tflops_fp16=None, memory_gb_per_node=8), district="黄岛区"),
    ]
    d = explain_job(req(8, domestic_only=True, district="崂山区", memory_gb=64, model="Ascend",
                        budget_fen=1), pools, NOW)
    lines = [r for c in d.candidates for r in c.reasons] + [d.message]
    assert len(lines) >= 10
    for line in lines:
        zh = reason(line, "zh", CST)
        assert not set(LATIN.findall(zh)) - UNITS - {"Xeon", "Ascend"}, (line, zh)
    joined = reasons(d.candidates[0].reasons, "zh", CST)
    assert "；" in joined and "设备类型为 CPU，作业需要 GPU" in joined


def test_amounts_states_policies_and_times_are_translated_too() -> None:
    assert reason("cost estimate 1234 fen is over the budget of 100 fen", "zh", CST) == \
        "预计费用 ¥12.34 超出预算 ¥1.00"
    assert reason("committed to qd-ai/cpu (best by cheapest, of 3 feasible pools)", "zh", CST) == \
        "已选定 qd-ai/cpu（按最便宜策略最优，共 3 个可用资源池）"
    assert reason("re-queued: run 4 lost (Slurm NODE_FAIL (NodeDown))", "zh", CST) == \
        "重新排队：运行 #4 丢失（Slurm：节点故障（节点宕机））"
    assert reason("center qd-hpc offline since 2026-12-01 02:00:00Z", "zh", CST) == \
        "中心 qd-hpc 自 2026-12-01 10:00:00 CST 起离线"
    assert reason("something nobody wrote a pattern for", "zh", CST) == "something nobody wrote a pattern for"
    assert reason("", "zh", CST) == "" and reason(None, "zh", CST) == ""


def test_display_zone_is_beijing_by_default_and_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    at = datetime(2026, 12, 31, 20, 30, tzinfo=UTC)
    monkeypatch.delenv("SUANLI_TZ", raising=False)
    assert local_time(at, display_zone()) == "2027-01-01 04:30:00 CST"
    monkeypatch.setenv("SUANLI_TZ", "UTC")
    assert local_time(at, display_zone(), seconds=False) == "2026-12-31 20:30 UTC"
    monkeypatch.setenv("SUANLI_TZ", "Europe/Berlin")
    assert local_time(at.replace(tzinfo=None), display_zone()) == "2026-12-31 21:30:00 CET"  # naive: UTC
    for bad in ("Mars/Olympus", "../../etc/passwd", "/etc/localtime", "not a zone"):
        monkeypatch.setenv("SUANLI_TZ", bad)
        with pytest.raises(ValueError, match="SUANLI_TZ"):
            display_zone()


@pytest.mark.parametrize(("value", "shown"), [
    (7.78e-06, "0.00000778"), (0.0, "0"), (1e-12, "0.000000000001"), (0.5, "0.5"), (12.345, "12.3"),
    (1234.5, "1,234"), (None, "-"), (123456789.0, "123,456,789"), (-3.2e-05, "-0.000032"),
])
def test_figures_are_never_in_scientific_notation(value: float | None, shown: str) -> None:
    assert plain_number(value) == shown
    assert "e" not in plain_number(value).lower()


@pytest.mark.parametrize("text, want", [
    ("dataset imagenet is not at this center", "数据集 imagenet 不在此中心"),
    ("no pool in the network can ever run this job: dataset imagenet is only at east, where no "
     "pool can run it",
     "网络中没有任何资源池能运行此作业：数据集 imagenet 只在 east，那里没有资源池能运行它"),
    ("no pool in the network can ever run this job: datasets a, b are together only at east, "
     "where no pool can run it",
     "网络中没有任何资源池能运行此作业：数据集 a, b 同时只在 east，那里没有资源池能运行它"),
    ("no pool in the network can ever run this job: dataset a is at no center",
     "网络中没有任何资源池能运行此作业：数据集 a 不在任何中心"),
    ("no pool in the network can ever run this job: datasets a, b are at no center together",
     "网络中没有任何资源池能运行此作业：数据集 a, b 不同时在任何中心"),
])
def test_a_dataset_that_cannot_travel_is_named_in_chinese(text: str, want: str) -> None:
    assert reason(text, "zh", CST) == want
