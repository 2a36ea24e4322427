"""The services' English sentences in Chinese, at render time: job history reasons, the
scheduler's "why not chosen" lines and placement messages, run outcomes from every connector, and
the errors a form or an estimate shows. One table of full-match patterns; a named group is
translated by its prefix (`why`: another sentence, again through the table; `fen`: an amount in
fen, shown in yuan; `dev`/`prec`: upper-cased; `pol`/`pols`: a policy's name, or a list of
them; `role`: roles; `noun`: what a "no ..." is about; `st`: a backend's state; `at`: a UTC time,
shown in the display zone), every other group stays as written (names, numbers).
A sentence no pattern knows is shown as the service wrote it."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo

from ..domain.money import yuan
from ..domain.timefmt import local_time

POLICY_ZH = {"fastest": "最快", "cheapest": "最便宜", "greenest": "最节能", "balanced": "均衡"}
POLICY_EN = {"fastest": "fastest", "cheapest": "cheapest", "greenest": "greenest", "balanced": "balanced"}

# Job and run states as the backends name them (Slurm's job_state, Ray's job status), and ours.
STATE_ZH = {
    "QUEUED": "排队中", "PLACED": "已调度", "RUNNING": "运行中", "COMPLETED": "已完成", "FAILED": "失败",
    "CANCELLED": "已取消", "TIMEOUT": "超时", "PENDING": "等待中", "SUCCEEDED": "成功",
    "STOPPED": "已停止", "NODE_FAIL": "节点故障", "OUT_OF_MEMORY": "内存不足", "PREEMPTED": "被抢占",
    "BOOT_FAIL": "启动失败", "DEADLINE": "超过截止时间", "SUSPENDED": "已挂起", "REQUEUED": "已重新排队",
    "CONFIGURING": "配置中", "COMPLETING": "收尾中",
}

# A voucher application's states.
APPLICATION_STATE_ZH = {"pending": "待审核", "approved": "已批准", "partly_approved": "部分批准",
                        "rejected": "已驳回"}

# The roles, as a sentence names them.
ROLE_ZH = {"platform_admin": "平台管理员", "center_operator": "中心运维人员",
           "tenant_admin": "企业管理员", "tenant_user": "企业成员", "reviewer": "审核员",
           "auditor": "审计员"}

# What "no NOUN 12" may be about (a thing that does not exist, or is not the reader's).
NOUN_ZH = {"voucher programme": "算力券计划", "voucher application": "算力券申请",
           "voucher grant": "算力券额度", "voucher redemption": "算力券抵扣记录", "tenant": "企业",
           "center": "中心", "user": "用户", "token": "令牌", "DAG": "工作流", "peer": "对等平台",
           "pool": "资源池", "artifact": "文件", "dataset": "数据集", "run": "运行",
           "array": "作业数组", "ledger transaction": "账务交易"}

# Slurm's state_reason words that a finished job carries most often.
SLURM_REASON_ZH = {"NonZeroExitCode": "非零退出码", "TimeLimit": "超出时限", "None": "无",
                   "JobLaunchFailure": "作业启动失败", "Prolog": "前置脚本", "RaisedSignal": "收到信号",
                   "NodeDown": "节点宕机", "OutOfMemory": "内存不足", "Resources": "等待资源",
                   "Priority": "优先级排队"}

_YUAN = r"-?¥[\d,]+\.\d\d"
_RULES: list[tuple[str, str]] = [
    # -- the scheduler: why a pool was not chosen (scheduling/placement.py, domain/task.py) -----
    (r"device is (?P<dev1>\w+), job needs (?P<dev2>\w+)", "设备类型为 {dev1}，作业需要 {dev2}"),
    (r"model is (?P<a>.+), job needs (?P<b>.+)", "型号为 {a}，作业需要 {b}"),
    (r"not a domestic \(国产\) device", "不是国产芯片"),
    (r"(?P<a>.+) has no (?P<prec>\w+) capability", "{a} 不支持 {prec} 精度"),
    (r"(?P<a>\d+) units cannot be split evenly over (?P<b>\d+) nodes", "{a} 个设备无法平均分到 {b} 个节点"),
    (r"needs (?P<a>\d+) units per node, pool has (?P<b>\d+) per node "
     r"\(ask for nodes=(?P<c>\d+) to spread it\)",
     "每节点需要 {a} 个设备，资源池每节点只有 {b} 个（可改为 {c} 个节点分散运行）"),
    (r"needs (?P<a>\d+) units per node, pool has (?P<b>\d+) per node",
     "每节点需要 {a} 个设备，资源池每节点只有 {b} 个"),
    (r"needs (?P<a>\d+) nodes, pool has (?P<b>\d+)", "需要 {a} 个节点，资源池只有 {b} 个"),
    (r"needs (?P<a>\d+) GB per node, pool has (?P<b>\d+) GB per node",
     "每节点需要 {a} GB 内存，资源池每节点只有 {b} GB"),
    (r"walltime (?P<a>\d+)s over the pool's limit (?P<b>\d+)s", "时限 {a} 秒超过资源池上限 {b} 秒"),
    (r"district is unknown, job requires (?P<b>.+)", "所在区未知，作业要求{b}"),
    (r"district is (?P<a>.+), job requires (?P<b>.+)", "位于{a}，作业要求{b}"),
    (r"center is offline", "中心离线"),
    (r"center is draining \(no new placements\)", "中心停止接收新作业"),
    (r"cannot free enough units", "无法腾出足够的设备"),
    # federation (peer platforms)
    (r"withdrawn by the platform that offered it", "提供它的平台已撤下该资源池"),
    (r"not one of the job's centers \((?P<c>.+)\)", "不在作业指定的中心之内（{c}）"),
    (r"excluded by the job \(exclude_centers: (?P<c>.+)\)", "作业已排除该中心（{c}）"),
    (r"home first: a home pool finishes within (?P<a>[\d.]+) s of it \(peers only when more "
     r"than (?P<b>[\d.]+) s earlier\)",
     "本地优先：本地资源池的完成时间与之相差不到 {a} 秒（对等平台须早 {b} 秒以上）"),
    (r"awaiting the peer's quote", "等待对等平台报价"),
    (r"the peer cannot run it now: (?P<why>.+)", "对等平台现在无法运行：{why}"),
    (r"cost estimate (?P<fen1>\d+) fen is over the budget of (?P<fen2>\d+) fen",
     "预计费用 {fen1} 超出预算 {fen2}"),
    (r"cost estimate (?P<a>\S+) is over the budget of (?P<b>\S+)", "预计费用 {a} 超出预算 {b}"),
    (r"arch (?P<a>\S+), not (?P<b>\S+)", "架构为 {a}，作业需要 {b}"),
    (r"lacks features? (?P<a>.+)", "缺少特性 {a}"),
    (r"dataset (?P<a>\S+) is not at this center", "数据集 {a} 不在此中心"),
    (r"tenant quota: (?P<a>\d+) of (?P<b>\d+) (?P<dev>\w+) units in use, the job needs (?P<c>\d+)",
     "企业配额：已用 {a}/{b} 个 {dev} 设备，作业需要 {c} 个"),
    # -- the scheduler: what it decided (placement messages) ------------------------------------
    (r"no feasible pool now within the budget", "当前预算内没有可用的资源池"),
    (r"no feasible pool now", "当前没有可用的资源池"),
    (r"committed to (?P<a>\S+) \(best by (?P<pol>\w+), of (?P<n>\d+) feasible pools?\)",
     "已选定 {a}（按{pol}策略最优，共 {n} 个可用资源池）"),
    (r"queued at (?P<a>\S+)", "在 {a} 排队"),
    (r"held at (?P<a>\S+): (?P<why>.+)", "在 {a} 暂缓：{why}"),
    (r"started on (?P<a>\S+) \(best by (?P<pol>\w+)\)", "已在 {a} 启动（按{pol}策略最优）"),
    (r"backfilled on (?P<a>\S+) \(best by (?P<pol>\w+)\)", "已回填到 {a} 启动（按{pol}策略最优）"),
    (r"waiting at (?P<a>\S+) \(#(?P<n>\d+)\): units are free, but not on whole nodes it can use",
     "在 {a} 等待（第 {n} 位）：有空闲设备，但不在它能用的整节点上"),
    (r"waiting at (?P<a>\S+) \(#(?P<n>\d+), first in line\): units reserved from (?P<at>[\d-]+ [\d:]+)Z",
     "在 {a} 等待（第 {n} 位，排在最前）：设备自 {at} 起为它预留"),
    (r"waiting at (?P<a>\S+) \(#(?P<n>\d+)\)", "在 {a} 等待（第 {n} 位）"),
    (r"best pool now: (?P<a>\S+)", "当前最佳资源池：{a}"),
    (r"moved from (?P<a>\S+) to (?P<b>\S+): it starts now there \(best by (?P<pol>\w+)\)",
     "已从 {a} 改派到 {b}：在那里立即启动（按{pol}策略最优）"),
    # -- a job's history (services/jobs.py, engine.py, dags.py, billing.py, health.py) ----------
    (r"submitted", "已提交"),
    (r"submitted by (?P<a>.+)", "由 {a} 提交"),
    (r"resubmitted from job (?P<j>\d+) by (?P<a>.+)", "由 {a} 按作业 {j} 重新提交"),
    (r"stage (?P<s>.+) of DAG (?P<d>\d+), submitted by (?P<a>.+)", "DAG {d} 的阶段 {s}，由 {a} 提交"),
    (r"stage (?P<s>.+) of DAG (?P<d>\d+): (?P<deps>.+) completed", "DAG {d} 的阶段 {s}：{deps} 已完成"),
    (r"placed on (?P<a>\S+) \(moved from (?P<b>\S+), where it waited\)",
     "已调度到 {a}（从等待中的 {b} 改派）"),
    (r"placed on (?P<a>\S+)", "已调度到 {a}"),
    (r"running on run (?P<r>\d+)", "运行中（运行 #{r}）"),
    (r"cancelled; the run was lost", "已取消；运行已丢失"),
    (r"re-queued: run (?P<r>\d+) lost \((?P<why>.*)\)", "重新排队：运行 #{r} 丢失（{why}）"),
    (r"run (?P<r>\d+) lost \((?P<why>.*)\); requeue is off", "运行 #{r} 丢失（{why}）；作业未设置重新排队"),
    (r"cancelled; (?P<c>\S+) refused the job: (?P<why>.+)", "已取消；{c} 拒绝了该作业：{why}"),
    (r"(?P<c>\S+) refused the job (?P<n>\d+) times: (?P<why>.+)", "{c} 已 {n} 次拒绝该作业：{why}"),
    (r"re-queued: (?P<c>\S+) refused the job: (?P<why>.+)", "重新排队：{c} 拒绝了该作业：{why}"),
    (r"submit failed: (?P<why>.+)", "提交失败：{why}"),
    (r"cancel requested by (?P<a>.+)", "{a} 已请求取消"),
    (r"cancelled by (?P<a>.+)", "由 {a} 取消"),
    (r"cancelled in the portal", "在门户中取消"),
    (r"stopped at its budget of (?P<fen>\d+) fen", "费用达到预算 {fen}，已停止"),
    (r"center (?P<c>\S+) offline since (?P<at>[\d-]+ [\d:]+)Z", "中心 {c} 自 {at} 起离线"),
    (r"health: back online", "健康检查：恢复在线"),
    # -- how a run ended, as each connector says it ---------------------------------------------
    (r"exit code (?P<c>-?\d+) \(killed by signal (?P<s>\d+), or exited so\)",
     "退出码 {c}（被信号 {s} 终止，或程序以此退出）"),
    (r"exit code (?P<c>-?\d+)", "退出码 {c}"),
    (r"walltime of (?P<s>\d+)s reached", "已达时限 {s} 秒"),
    (r"cancelled on request", "应请求取消"),
    (r"cancelled before start", "启动前已取消"),
    (r"cancelled before it was submitted", "提交前已取消"),
    (r"cannot prepare the job's sandbox: (?P<a>.+)", "无法准备作业的沙箱：{a}"),
    (r"cannot start the sandbox: (?P<a>.+)", "无法启动沙箱：{a}"),
    (r"the sandbox could not be built \(see the job's stderr\)", "无法构建沙箱（见作业的标准错误）"),
    (r"launch interrupted before the job started", "作业开始前启动被中断"),
    (r"the run's supervisor died without a result \(machine restart\?\)",
     "运行的监护进程退出且没有结果（机器重启？）"),
    (r"cancelled; supervisor gone", "已取消；监护进程已不在"),
    (r"never submitted", "从未提交"),
    (r"launching", "启动中"),
    (r"starting", "正在启动"),
    (r"(?P<b>Slurm|Ray) no longer knows this job", "{b} 已找不到该作业"),
    (r"Slurm (?P<st>[A-Z_]+) \((?P<sr>\w+)\)", "Slurm：{st}（{sr}）"),
    (r"Slurm (?P<st>[A-Z_]+)", "Slurm：{st}"),
    (r"Ray (?P<st>[A-Z_]+): (?P<a>.+)", "Ray：{st}：{a}"),
    (r"Ray (?P<st>[A-Z_]+)", "Ray：{st}"),
    (r"stopped \((?P<why>.+)\)", "已停止（{why}）"),
    # -- errors a form, an estimate or a page shows (services, domain/money.py) ------------------
    (r"no pool in the network can ever run this job", "网络中没有任何资源池能运行此作业"),
    (r"no pool in the network can ever run this job; the largest (?P<dev1>.+) pool is (?P<b>\S+): "
     r"(?P<n>\d+) nodes × (?P<u>\d+) units = (?P<t>\d+) (?P<dev2>\w+) \(most per node: (?P<w>\S+), "
     r"(?P<m>\d+)\)",
     "网络中没有任何资源池能运行此作业；最大的 {dev1} 资源池是 {b}：{n} 个节点 × 每节点 {u} 个 = {t} 个 "
     "{dev2}（每节点最多的是 {w}：{m} 个）"),
    (r"no pool in the network can ever run this job; the largest (?P<dev1>.+) pool is (?P<b>\S+): "
     r"(?P<n>\d+) nodes × (?P<u>\d+) units = (?P<t>\d+) (?P<dev2>\w+)",
     "网络中没有任何资源池能运行此作业；最大的 {dev1} 资源池是 {b}：{n} 个节点 × 每节点 {u} 个 = "
     "{t} 个 {dev2}"),
    (r"no pool in the network can ever run this job; the network has no (?P<dev1>.+) pool",
     "网络中没有任何资源池能运行此作业；网络中没有 {dev1} 资源池"),
    (r"no pool in the network can ever run this job: no pool has arch (?P<a>\S+)",
     "网络中没有任何资源池能运行此作业：没有架构为 {a} 的资源池"),
    (r"no pool in the network can ever run this job: no pool has feature (?P<a>.+)",
     "网络中没有任何资源池能运行此作业：没有资源池具备特性 {a}"),
    (r"no pool in the network can ever run this job: dataset (?P<a>\S+) is only at (?P<b>.+), "
     r"where no pool can run it",
     "网络中没有任何资源池能运行此作业：数据集 {a} 只在 {b}，那里没有资源池能运行它"),
    (r"no pool in the network can ever run this job: datasets (?P<a>.+) are together only at "
     r"(?P<b>.+), where no pool can run it",
     "网络中没有任何资源池能运行此作业：数据集 {a} 同时只在 {b}，那里没有资源池能运行它"),
    (r"no pool in the network can ever run this job: dataset (?P<a>\S+) is at no center",
     "网络中没有任何资源池能运行此作业：数据集 {a} 不在任何中心"),
    (r"no pool in the network can ever run this job: datasets (?P<a>.+) are at no center together",
     "网络中没有任何资源池能运行此作业：数据集 {a} 不同时在任何中心"),
    (r"no pool in the network can ever run this job: no pool offers environment (?P<a>\S+)",
     "网络中没有任何资源池能运行此作业：没有资源池提供环境 {a}"),
    (r"no environment (?P<a>\S+)", "没有环境 {a}"),
    (r"needs (?P<a>\d+) units per node, pool has (?P<b>\d+) per node \(the pool has (?P<n>\d+) "
     r"nodes × (?P<u>\d+) = (?P<t>\d+) units at most\)",
     "每节点需要 {a} 个设备，资源池每节点只有 {b} 个（该资源池最多 {n} 个节点 × {u} = {t} 个设备）"),
    (r"the cheapest pool \((?P<a>\S+)\) would cost about (?P<fen1>\d+) fen for the walltime, "
     r"over the budget of (?P<fen2>\d+) fen", "最便宜的资源池（{a}）按时限计约需 {fen1}，超出预算 {fen2}"),
    (r"the cheapest pool \((?P<a>\S+)\) would cost about (?P<b>\S+) for the walltime, "
     r"over the budget of (?P<c>\S+)", "最便宜的资源池（{a}）按时限计约需 {b}，超出预算 {c}"),
    (r"no pool can finish the job by its deadline (?P<at1>\S+): the earliest estimated finish is "
     r"(?P<at2>\S+) on (?P<a>\S+) \(start in (?P<s>\d+) s, walltime (?P<w>\d+) s\)",
     "没有资源池能在截止时间 {at1} 前完成作业：最早预计 {at2} 在 {a} 完成（{s} 秒后开始，时限 {w} 秒）"),
    (r"the job may cost up to (?P<a>" + _YUAN + r") but tenant (?P<t>\d+) can commit only (?P<b>" + _YUAN
     + r") \(prepaid (?P<c>" + _YUAN + r") \+ credit limit (?P<d>" + _YUAN + r") − owed (?P<e>" + _YUAN
     + r") − held by unfinished jobs (?P<f>" + _YUAN + r")\); deposit money or ask for a higher credit limit",
     "作业最多可能花费 {a}，但企业 {t} 只能动用 {b}"
     "（预付 {c} + 信用额度 {d} − 欠款 {e} − 未完成作业占用 {f}）；请充值或申请更高的信用额度"),
    (r"name must be 1-200 characters", "名称须为 1 到 200 个字符"),
    (r"command must be a non-empty list of strings|command is empty or too long", "命令为空或过长"),
    (r"give a command", "请填写命令"),
    (r"units must be at least 1", "数量至少为 1"),
    (r"nodes must be at least 1", "节点数至少为 1"),
    (r"walltime_s must be at least 1 second", "时限至少为 1 秒"),
    (r"budget_fen must not be negative", "预算不能为负数"),
    (r"not an amount in yuan: (?P<a>.+)", "不是以元为单位的金额：{a}"),
    (r"an amount is positive with at most 2 decimals \(fen\), not (?P<a>.+)",
     "金额须为正数，最多两位小数（分），而不是 {a}"),
    (r"an amount is 0 or more with at most 2 decimals \(fen\), not (?P<a>.+)",
     "金额须不小于 0，最多两位小数（分），而不是 {a}"),
    (r"(?P<a>.+) yuan is out of range", "{a} 元超出范围"),
    (r"no job (?P<j>\d+)", "没有作业 {j}"),
    (r"job (?P<j>\d+) has no outputs \(it declared none\)", "作业 {j} 没有输出（它未声明输出）"),
    (r"job (?P<j>\d+) has no outputs", "作业 {j} 没有输出"),
    (r"job (?P<j>\d+) has already ended \((?P<st>\w+)\)", "作业 {j} 已结束（{st}）"),
    (r"jobs are submitted by tenant users \(tenant_admin or tenant_user\)",
     "作业由企业用户提交（企业管理员或企业成员）"),
    (r"the account page is a tenant's", "账户页面属于企业用户"),
    (r"the center page is a center operator's", "中心页面属于中心运维人员"),
    (r"this needs one of the roles (?P<role_a>.+); you are (?P<role_b>\S+)",
     "需要以下角色之一：{role_a}；你的角色是{role_b}"),
    (r"no (?P<noun>" + "|".join(sorted(NOUN_ZH, key=len, reverse=True)) + r") (?P<a>\S+)",
     "没有{noun} {a}"),
    (r"a reviewer does not read jobs: a tenant's usage \(/api/v1/usage\), money "
     r"\(/api/v1/ledger/tenants/\{id\}\) and invoices are what it judges by",
     "审核员不查看作业：审核依据是企业的用量、资金和账单"),
    (r"device is one of (?P<a>.+), not '(?P<b>.*)'", "设备类型只能是 {a}，不能是“{b}”"),
    (r"policy is one of (?P<pols>.+), not '(?P<b>.*)'", "调度策略只能是{pols}，不能是“{b}”"),
    (r"give a command", "请填写要运行的命令"),
    (r"a clawback needs a reason \(1-500 characters\)", "追回须填写理由（1 至 500 字）"),
    (r"freezing needs a reason \(1-500 characters\)", "冻结须填写理由（1 至 500 字）"),
    (r"redemption (?P<a>\d+) was already clawed back", "抵扣记录 {a} 已被追回"),
    (r"a job's (?:logs|outputs) are for its tenant, the platform admin and the center that ran it, "
     r"not for the (?P<a>\S+) role",
     "作业的日志和输出只对其企业、平台管理员和运行它的中心开放，{a} 角色不可查看"),
    (r"only the tenant's users or a platform admin cancel a job", "只有企业用户或平台管理员可以取消作业"),
    # -- vouchers: what the application and review forms refuse (services/vouchers.py) ---------
    (r"describe the planned use in 1-2000 characters", "请填写计划用途（1 至 2000 字）"),
    (r"(?:requested_fen|planned_spend_fen) is 1 to (?P<fen>\d+) fen", "金额须在 ¥0.01 到 {fen} 之间"),
    (r"programme (?P<a>.+) is not open for applications \((?P<b>\S+) to (?P<c>\S+)\)",
     "算力券计划 {a} 不在申请期内（{b} 至 {c}）"),
    (r"tenant (?P<a>.+) is not eligible: the programme is for tenants registered in: (?P<b>.+)",
     "企业 {a} 不符合条件：本计划面向注册在以下地区的企业：{b}"),
    (r"the programme needs a planned spend of at least (?P<a>" + _YUAN + ")",
     "本计划要求计划支出至少 {a}"),
    (r"at most (?P<a>" + _YUAN + r") can be asked for on a planned spend of (?P<b>" + _YUAN +
     r") \(ratio up to (?P<c>[\d.]+) %\)", "计划支出 {b} 最多可申请 {a}（补贴比例最高 {c}%）"),
    (r"the tenant cap leaves (?P<a>" + _YUAN + r") in this programme \(cap (?P<b>" + _YUAN + r")\)",
     "企业上限在本计划中还剩 {a}（上限 {b}）"),
    (r"the tenant cap leaves (?P<a>" + _YUAN + r") for this tenant", "企业上限只剩 {a}"),
    (r"application (?P<a>\d+) of this tenant is still pending review", "本企业的申请 {a} 仍在审核中"),
    (r"decision is approve or reject", "审核结果须为批准或驳回"),
    (r"a reason has at most 500 characters", "理由最多 500 字"),
    (r"application (?P<a>\d+) was already reviewed \((?P<ast>\w+)\)", "申请 {a} 已审核（{ast}）"),
    (r"a rejection needs a reason", "驳回须填写理由"),
    (r"approved_fen is 1 to the requested (?P<fen>\d+)", "批准金额须在 ¥0.01 到申请的 {fen} 之间"),
    (r"a partial approval needs a reason", "部分批准须填写理由"),
    (r"the pool of (?P<a>.+) has only (?P<b>" + _YUAN + r") left to grant; approve at most that",
     "{a} 的资金池只剩 {b} 可发放；批准金额不能超过它"),
    (r"tenant (?P<a>\d+) is frozen: (?P<b>.*)", "企业 {a} 已被冻结：{b}"),
]

_COMPILED = [(re.compile(pattern), template) for pattern, template in _RULES]


def _when(text: str, zone: tzinfo) -> str:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return text
    return local_time(at if at.tzinfo else at.replace(tzinfo=UTC), zone)


def _listed(table: dict[str, str]) -> Callable[[str], str]:
    """A comma-separated list of words, each through `table`, joined the Chinese way."""
    return lambda v: "、".join(table.get(x.strip(), x.strip()) for x in v.split(","))


def _converter(group: str, zone: tzinfo) -> Callable[[str], str]:
    if group.startswith("why"):
        return lambda v: reason(v, "zh", zone)
    if group.startswith("fen"):
        return lambda v: yuan(int(v))
    if group.startswith(("dev", "prec")):
        return str.upper
    if group.startswith("pols"):
        return _listed(POLICY_ZH)
    if group.startswith("pol"):
        return lambda v: POLICY_ZH.get(v, v)
    if group.startswith("role"):
        return _listed(ROLE_ZH)
    if group.startswith("noun"):
        return lambda v: NOUN_ZH.get(v, v)
    if group.startswith("ast"):
        return lambda v: APPLICATION_STATE_ZH.get(v, v)
    if group.startswith("st"):
        return lambda v: STATE_ZH.get(v, v)
    if group.startswith("sr"):
        return lambda v: SLURM_REASON_ZH.get(v, v)
    if group.startswith("at"):
        return lambda v: _when(v, zone)
    return lambda v: v


def reason(text: str | None, lang: str, zone: tzinfo) -> str:
    """`text` (a service's English sentence) for people reading `lang`."""
    if not text or lang == "en":
        return text or ""
    for pattern, template in _COMPILED:
        hit = pattern.fullmatch(text)
        if hit is not None:
            return template.format(**{k: _converter(k, zone)(v or "") for k, v in hit.groupdict().items()})
    return text


def reasons(items: list[str] | None, lang: str, zone: tzinfo) -> str:
    """A candidate's reasons, each translated, joined."""
    return ("；" if lang != "en" else "; ").join(reason(r, lang, zone) for r in items or [])


def policy_name(value: str, lang: str) -> str:
    return (POLICY_EN if lang == "en" else POLICY_ZH).get(value, value)
