"""The demo city (Qingdao, from the seeds), its accounts, and `demo-credentials.json`.

Facts from the seeds: the Qingdao AI Computing Center (Laoshan, Ascend, first phase 100P, peak use
82P), the "Heart of the Sea" center (Sugon; with the former a 250P park), the supercomputing center
(Sunway, x86, GPU and big-data clusters), China Mobile's and China Unicom's AI centers, China
Telecom's cloud base. Unit counts, device figures, prices, districts (where the seeds are silent)
and PUE are chosen to be plausible; the README lists which are which.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ..config import write_private
from ..domain.credit_code import check_character
from ..domain.enums import CenterKind, DeviceKind, Role
from ..domain.errors import Unauthenticated
from ..domain.task import ARCHES
from ..ledger.entries import deposit
from ..store import models as m
from ..store.migrate import startup_lock
from . import vouchers
from .auth import Principal, authenticate, create_user, issue_token, principal_of
from .centers import CenterInput, PoolInput, create_center
from .context import Platform
from .ledger import post
from .tenants import create_tenant

CREDENTIAL_KEYS = ("platform_admin", "tenant_a", "tenant_b", "center_operator", "reviewer", "auditor")
DEMO_USERS = {
    "platform_admin": ("admin", Role.PLATFORM_ADMIN, "平台管理员 Platform admin"),
    "tenant_a": ("alice", Role.TENANT_ADMIN, "Alice (海蓝智能)"),
    "tenant_b": ("bob", Role.TENANT_ADMIN, "Bob (蓝海生物)"),
    "center_operator": ("operator", Role.CENTER_OPERATOR, "青岛人工智能计算中心 operator"),
    "reviewer": ("reviewer", Role.REVIEWER, "算力券 reviewer"),
    "auditor": ("auditor", Role.AUDITOR, "审计 auditor"),
}


def _pool(name: str, kind: DeviceKind, model: str, domestic: bool, upn: int, nodes: int,
          mem: int, price: int, watts: int, fp64: float | None, fp32: float | None,
          fp16: float | None, int8: float | None, sw: Software | None = None) -> PoolInput:
    sw = sw or Software()
    return PoolInput(name=name, device_kind=kind, device_model=model, domestic=domestic,
                     units_per_node=upn, nodes=nodes, memory_gb_per_node=mem,
                     price_fen_per_unit_hour=price, watts_per_unit=watts, tflops_fp64=fp64,
                     tflops_fp32=fp32, tflops_fp16=fp16, tflops_int8=int8, arch=sw.arch,
                     features=list(sw.features), environments=dict(sw.environments))


@dataclass(frozen=True)
class Software:
    """What programs run on a demo pool: its arch, features and environments."""

    arch: str = "x86_64"
    features: tuple[str, ...] = ()
    environments: dict[str, str] = field(default_factory=dict)


def _activate(script: str, env: str) -> str:
    """An environment's activation: the vendor's setup script where the center has it (the demo's
    centers are emulated on this machine, which has none: then only the marker variable), and
    `SUANLI_ENV` naming the environment, so a job can see what it got."""
    return f"if [ -f {script} ]; then . {script}; fi\nexport SUANLI_ENV={env}"


# What programs run where (issue 16): Ascend NPUs sit on Kunpeng (aarch64) hosts with CANN; Hygon
# DCUs on x86_64 with DTK; NVIDIA GPUs with CUDA; Sunway is its own ISA (sw_64); CPU clusters
# offer MPI. PyTorch 2.4 is offered as a named environment on the accelerator pools.
ASCEND = Software(arch="aarch64", features=("cann-8.0", "mpi"), environments={
    "pytorch-2.4": _activate("/usr/local/Ascend/ascend-toolkit/set_env.sh", "pytorch-2.4")})
DCU = Software(arch="x86_64", features=("dtk-24.04", "mpi"), environments={
    "pytorch-2.4": _activate("/opt/dtk/env.sh", "pytorch-2.4")})
CUDA = Software(arch="x86_64", features=("cuda-12.4", "mpi"), environments={
    "pytorch-2.4": _activate("/opt/conda/etc/profile.d/conda.sh", "pytorch-2.4")})
SUNWAY = Software(arch="sw_64", features=("mpi", "athread"))
X86_MPI = Software(arch="x86_64", features=("mpi",))
ARM_MPI = Software(arch="aarch64", features=("mpi",))


NPU, GPU, CPU = DeviceKind.NPU, DeviceKind.GPU, DeviceKind.CPU


def demo_centers() -> list[CenterInput]:
    def emulated(slug: str, zh: str, en: str, kind: CenterKind, district: str, operator: str,
                 pue: float, pools: list[PoolInput]) -> CenterInput:
        return CenterInput(slug=slug, name_zh=zh, name_en=en, kind=kind, district=district,
                           operator=operator, pue=pue, connector="local",
                           connector_config={"center": slug}, emulated=True, pools=pools)

    return [
        emulated("qd-ai", "青岛人工智能计算中心", "Qingdao AI Computing Center", CenterKind.AI,
                 "崂山区", "青岛芯算科技发展有限公司", 1.25, [
                     # 320 × 320 TFLOPS FP16 = 102.4P: the seeds' "first phase 100P".
                     _pool("ascend-910b", NPU, "Ascend 910B", True, 8, 40, 1024, 800, 400,
                           None, 80.0, 320.0, 640.0, ASCEND),
                     _pool("kunpeng-920", CPU, "Kunpeng 920", True, 128, 16, 512, 5, 3,
                           0.02, 0.04, None, None, ARM_MPI),
                 ]),
        emulated("qd-hzx", "青岛“海之心”人工智能计算中心", "Qingdao Heart of the Sea AI Center "
                 "(Sugon)", CenterKind.AI, "崂山区", "中科曙光 Sugon", 1.15, [
                     # 768 × 196 TFLOPS FP16 ≈ 150P: with qd-ai the seeds' "250P park".
                     _pool("dcu-k100", GPU, "Hygon DCU K100", True, 8, 96, 1024, 600, 350,
                           24.5, 49.0, 196.0, 392.0, DCU),
                     _pool("hygon-c86", CPU, "Hygon C86 7285", True, 64, 32, 256, 4, 3,
                           0.035, 0.07, None, None, X86_MPI),
                 ]),
        emulated("qd-sc", "青岛超算中心", "Qingdao Supercomputing Center",
                 CenterKind.SUPERCOMPUTING, "即墨区", "青岛超算中心", 1.3, [
                     _pool("sunway", CPU, "Sunway SW26010-Pro", True, 1, 1024, 96, 60, 450,
                           14.0, 14.0, 55.0, None, SUNWAY),
                     _pool("x86", CPU, "Xeon 8358", False, 64, 200, 512, 6, 4,
                           0.083, 0.166, None, None, X86_MPI),
                     _pool("a100", GPU, "A100-80G", False, 8, 20, 1024, 1500, 400,
                           9.7, 19.5, 312.0, 624.0, CUDA),
                 ]),
        emulated("cmcc-ai", "中国移动智算中心(青岛)", "China Mobile AI Computing Center (Qingdao)",
                 CenterKind.AI, "城阳区", "中国移动 China Mobile", 1.3, [
                     _pool("a800", GPU, "A800-80G", False, 8, 64, 1024, 1400, 400,
                           9.7, 19.5, 312.0, 624.0, CUDA),
                     _pool("ascend-910b", NPU, "Ascend 910B", True, 8, 32, 1024, 750, 400,
                           None, 80.0, 320.0, 640.0, ASCEND),
                 ]),
        emulated("cucc-ai", "中国联通(青岛)智算中心", "China Unicom (Qingdao) AI Computing Center",
                 CenterKind.AI, "黄岛区", "中国联通 China Unicom", 1.3, [
                     _pool("l40s", GPU, "L40S", False, 8, 32, 512, 900, 350,
                           1.4, 91.6, 362.0, 733.0, CUDA),
                 ]),
        emulated("ct-cloud", "电信云基地", "China Telecom Cloud Base", CenterKind.CLOUD,
                 "李沧区", "中国电信 China Telecom", 1.35, [
                     _pool("vcpu", CPU, "Xeon 8380 vCPU", False, 96, 100, 384, 3, 3,
                           0.04, 0.08, None, None, X86_MPI),
                 ]),
    ]


def _meminfo_gb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return max(1, int(line.split()[1]) // (1024 * 1024))
    except OSError:
        pass
    return 4


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()[:100]
    except OSError:
        pass
    return "x86 CPU"


def _machine_arch() -> str:
    """This machine's architecture as suanli names it (x86_64 where it is not a known one)."""
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64", "sw64": "sw_64"}.get(machine, machine)
    return machine if machine in ARCHES else "x86_64"


def local_center() -> CenterInput:
    """This machine: a real center, its CPU cores as units."""
    return CenterInput(
        slug="local", name_zh="本机", name_en="This machine", kind=CenterKind.EDGE,
        district="", operator="", pue=1.5, connector="local",
        connector_config={"center": "local"}, emulated=False,
        pools=[_pool("cpu", CPU, _cpu_model(), False, os.cpu_count() or 1, 1, _meminfo_gb(),
                     2, 10, 0.05, 0.1, None, None, Software(_machine_arch(), environments={
                         "python3": "export SUANLI_ENV=python3"}))],
    )


def credit_code(division: str, org: str) -> str:
    first17 = "91" + division + org
    return first17 + check_character(first17)


DEMO_TENANTS = {
    "tenant_a": dict(name="青岛海蓝智能科技有限公司", district="崂山区",
                     credit_code=credit_code("370212", "MA3C5T8K2"), contact_name="Alice",
                     credit_limit_fen=5_000_000),
    "tenant_b": dict(name="青岛蓝海生物医药研究院有限公司", district="黄岛区",
                     credit_code=credit_code("370211", "MA94XR6F3"), contact_name="Bob",
                     credit_limit_fen=2_000_000),
}


DEMO_DEPOSITS = {"tenant_a": 20_000_000, "tenant_b": 5_000_000}  # ¥200,000 and ¥50,000


def seed_demo(p: Platform) -> bool:
    """Create the demo city once. Returns True when it was created now. Replicas starting together
    on one PostgreSQL database seed one after another (an advisory lock): the first creates the
    city, the others find it and leave it as it is."""
    with startup_lock(p.db.engine, "demo"):
        return _seed_demo(p)


def _seed_demo(p: Platform) -> bool:
    with p.db.session() as s:
        if s.scalar(select(m.Center.id).where(m.Center.slug == "qd-ai")) is not None:
            return False
    centers = {c.slug: create_center(p, None, c) for c in [*demo_centers(), local_center()]}
    tenants = {k: create_tenant(p, None, **v) for k, v in DEMO_TENANTS.items()}  # type: ignore[arg-type]
    with p.db.session() as s:  # their first bank transfers
        for key, fen in DEMO_DEPOSITS.items():
            post(s, deposit(tenants[key].id, fen, f"demo-{key}-opening"), p.clock.now())
    users = {}
    for key, (username, role, display) in DEMO_USERS.items():
        with p.db.session() as s:
            if s.scalar(select(m.User.id).where(m.User.username == username)) is not None:
                continue
        users[key] = principal_of(create_user(
            p, None, username=username, role=role, display_name=display,
            tenant_id=tenants[key].id if key in tenants else None,
            center_id=centers["qd-ai"].id if role is Role.CENTER_OPERATOR else None))
    if {"platform_admin", "reviewer", "tenant_a", "tenant_b"} <= set(users):
        seed_vouchers(p, users)
    return True


QINGDAO_DISTRICTS = ["市南区", "市北区", "李沧区", "崂山区", "城阳区", "黄岛区", "即墨区", "胶州市",
                     "平度市", "莱西市"]


def seed_vouchers(p: Platform, users: dict[str, Principal]) -> None:
    """This year's voucher programme (20 million yuan, 20 %, 30 % on domestic chips) with two
    grants and one application waiting for the reviewer."""
    year = p.clock.now().year
    prog = vouchers.create_programme(
        p, users["platform_admin"], name=f"{year} 青岛市算力券 Qingdao compute vouchers", year=year,
        rules={"ratio_bp": 2000, "overrides": [{"domestic": True, "ratio_bp": 3000}],
               "districts": QINGDAO_DISTRICTS, "credit_code_prefixes": ["913702"],
               "min_spend_fen": 1_000_000, "settlement_period": "monthly"})
    a = vouchers.apply(p, users["tenant_a"], prog["id"], requested_fen=20_000_000,
                       planned_spend_fen=100_000_000,
                       planned_use="大模型训练与推理 LLM training and inference on Ascend 910B")
    vouchers.review(p, users["reviewer"], a["id"], decision="approve")
    b = vouchers.apply(p, users["tenant_b"], prog["id"], requested_fen=8_000_000,
                       planned_spend_fen=40_000_000, planned_use="分子动力学模拟 molecular dynamics")
    vouchers.review(p, users["reviewer"], b["id"], decision="approve", approved_fen=5_000_000,
                    reason="约三分之一为非算力支出 about a third of the plan is not compute")
    vouchers.apply(p, users["tenant_b"], prog["id"], requested_fen=2_000_000,
                   planned_spend_fen=10_000_000, planned_use="蛋白质结构预测 protein structure prediction")


def ensure_credentials(p: Platform, path: Path) -> dict[str, str]:
    """Write valid tokens of the demo users to `path` (mode 0600), reusing ones that still work."""
    current: dict[str, Any] = {}
    if path.exists():
        try:
            current = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            current = {}
    out: dict[str, str] = {}
    for key in CREDENTIAL_KEYS:
        username = DEMO_USERS[key][0]
        token = current.get(key)
        if isinstance(token, str):
            try:
                if authenticate(p, token, record_use=False).username == username:
                    out[key] = token
                    continue
            except Unauthenticated:
                pass
        with p.db.session() as s:
            user_id = s.scalar(select(m.User.id).where(m.User.username == username))
        if user_id is None:
            continue
        _, out[key] = issue_token(p, user_id, name="demo")
    write_private(path, json.dumps(out, indent=2))
    return out
