"""Every string the portal shows, in Chinese (the default) and English."""

from __future__ import annotations

LANGS = ("zh", "en")

MESSAGES: dict[str, tuple[str, str]] = {
    "brand": ("算力一张网", "City compute network"),
    "sign_in": ("登录", "Sign in"),
    "sign_out": ("退出", "Sign out"),
    "username": ("用户名", "Username"),
    "password": ("密码", "Password"),
    "token": ("API 令牌", "API token"),
    "or_token": ("或粘贴 API 令牌", "or paste an API token"),
    "bad_login": ("用户名、密码或令牌不正确", "Wrong username, password or token"),
    "jobs": ("作业", "Jobs"),
    "submit_job": ("提交作业", "Submit a job"),
    "name": ("名称", "Name"),
    "command": ("命令", "Command"),
    "device": ("设备", "Device"),
    "units": ("数量", "Units"),
    "walltime": ("时限(秒)", "Walltime (s)"),
    "policy": ("策略", "Policy"),
    "budget": ("预算(元)", "Budget (yuan)"),
    "submit": ("提交", "Submit"),
    "estimate": ("估算", "Estimate"),
    "state": ("状态", "State"),
    "center": ("中心", "Center"),
    "submitted": ("提交时间", "Submitted"),
    "no_jobs": ("还没有作业", "No jobs yet"),
    "job": ("作业", "Job"),
    "history": ("历史", "History"),
    "logs": ("日志", "Logs"),
    "placement": ("调度说明", "Placement"),
    "candidate": ("候选资源池", "Candidate pool"),
    "why": ("原因", "Why"),
    "chosen": ("选中", "Chosen"),
    "usage": ("用量与费用", "Usage and cost"),
    "cost": ("费用", "Cost"),
    "cancel": ("取消", "Cancel"),
    "at": ("时间", "At"),
    "from_to": ("状态变化", "Change"),
    "reason": ("说明", "Reason"),
    "not_found": ("未找到", "Not found"),
    "forbidden": ("无权访问", "Not allowed"),
    "error": ("出错了", "Something went wrong"),
    "bad_csrf": ("表单已过期，请重试", "The form expired; please try again"),
    "language": ("English", "中文"),
    "estimate_cost": ("预计费用", "Estimated cost"),
    "estimate_start": ("预计开始", "Estimated start"),
    "estimate_pool": ("预计资源池", "Likely pool"),
    "home": ("首页", "Home"),
    "role": ("角色", "Role"),
    "review": ("算力券申请审核", "Voucher applications"),
    "queue_empty": ("没有待审核的申请", "No application is waiting"),
    "tenant": ("企业", "Tenant"),
    "programme": ("计划", "Programme"),
    "requested": ("申请金额", "Requested"),
    "planned_spend": ("计划支出", "Planned spend"),
    "approved_amount": ("批准金额(元，留空为全额)", "Approved (yuan; empty: all)"),
    "approve": ("批准", "Approve"),
    "reject": ("驳回", "Reject"),
    "decided": ("已审核", "Decided"),
}


def t(key: str, lang: str) -> str:
    """The text for `key` in `lang` (the key itself when it has none: a missing string shows)."""
    pair = MESSAGES.get(key)
    if pair is None:
        return key
    return pair[1] if lang == "en" else pair[0]
