"""Every refusal the portal can show, on a Chinese page, in Chinese: each form posted wrong in
each way its fields allow (the job form, the voucher application, the review, the claw-back, the
audit check, cancel and resubmit) and each page asked for by a role it is not for, or for what
does not exist. The message shown (the form's alert or the error page's) must have Chinese in it
and no English word left but names the platform itself shows (device kinds, slugs, ids). The
real app over the demo city, through TestClient."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from suanli.services.context import Platform
from suanli.web.reasons import reason

from ..demo_app import demo_app, signed_in

GHOST = 999_999
CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN = re.compile(r"[A-Za-z][A-Za-z_]{2,}")
# Words a Chinese sentence keeps as written: kinds and precisions as the hardware says them, the
# time zone, and what the demo's names are made of (slugs and pool names are shown as they are).
KEPT = {"CPU", "GPU", "NPU", "CST", "UTC", "FP16", "FP32", "FP64", "INT8", "cpu", "gpu", "npu"}
QUOTED = re.compile(r"'[^']*'|“[^”]*”")  # what the user typed, shown back as typed
MESSAGE = re.compile(r'<p class="(?:error|message)"[^>]*>(.*?)</p>', re.S)


@dataclass
class Town:
    client: TestClient
    creds: dict[str, str]
    p: Platform
    ids: dict[str, int] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)  # the words of the centers' and pools' slugs
    portals: dict[str, TestClient] = field(default_factory=dict)

    def portal(self, role: str) -> TestClient:
        """A browser of `role`, signed in, on the Chinese pages (the default)."""
        if role not in self.portals:
            self.portals[role] = signed_in(self.client.app, self.creds[role])
            self.portals[role].get("/lang/zh")
        return self.portals[role]

    def csrf(self, role: str, page: str) -> str:
        text = self.portal(role).get(page).text
        found = re.search(r'name="csrf" value="([^"]+)"', text)
        assert found, text[:500]
        return found.group(1)

    def api(self, role: str, method: str, path: str, body: Any = None) -> Any:
        r = self.client.request(method, path, json=body,
                                headers={"Authorization": f"Bearer {self.creds[role]}"})
        assert r.status_code < 300, r.text
        return r.json()


@pytest.fixture(scope="module")
def town() -> Iterator[Town]:
    with demo_app("suanli-refusals.") as (client, creds, p):
        t = Town(client, creds, p)
        job = t.api("tenant_a", "POST", "/api/v1/jobs", {
            "name": "mine", "command": ["true"], "resources": {"device": "cpu"},
            "walltime_s": 60})
        for _ in range(50):  # week-long 8-GPU jobs hold tenant_b's ¥50,000 until one is refused
            r = client.post("/api/v1/jobs", json={
                "name": "big", "command": ["train"], "policy": "cheapest", "walltime_s": 604800,
                "resources": {"device": "gpu", "units": 8}},
                headers={"Authorization": f"Bearer {creds['tenant_b']}"})
            if r.status_code != 201:
                break
        assert r.status_code == 402, r.text
        programme = t.api("tenant_a", "GET", "/api/v1/voucher-programmes")["items"][0]
        pending = t.api("reviewer", "GET", "/api/v1/voucher-applications?state=pending")["items"]
        t.ids.update(job=job["id"], programme=programme["id"], pending=pending[0]["id"])
        for c in t.api("platform_admin", "GET", "/api/v1/centers")["items"]:
            t.names |= set(LATIN.findall(c["slug"]))
            for pool in c["pools"]:
                t.names |= set(LATIN.findall(pool["name"]))
        yield t


BIG = {"name": "big", "command": "train", "device": "gpu", "units": "8", "walltime_s": "604800",
       "policy": "cheapest", "budget_yuan": ""}
JOB = {"name": "j", "command": "echo hi", "device": "cpu", "units": "1", "walltime_s": "600",
       "policy": "balanced", "budget_yuan": ""}
APPLY = {"requested_yuan": "1000", "planned_spend_yuan": "100000", "planned_use": "训练"}
# (who, the page the form is on, where it posts, what it posts)
FORMS: list[tuple[str, str, str, dict[str, str]]] = [
    ("tenant_a", "/jobs", "/jobs", {**JOB, "command": " "}),
    ("tenant_a", "/jobs", "/jobs", {**JOB, "units": "0"}),
    ("tenant_a", "/jobs", "/jobs", {**JOB, "units": "100000"}),
    ("tenant_a", "/jobs", "/jobs", {**JOB, "walltime_s": "0"}),
    ("tenant_a", "/jobs", "/jobs", {**JOB, "walltime_s": "99999999"}),
    ("tenant_a", "/jobs", "/jobs", {**JOB, "budget_yuan": "abc"}),
    ("tenant_a", "/jobs", "/jobs", {**JOB, "budget_yuan": "0.01", "device": "npu",
                                    "units": "8", "walltime_s": "36000"}),
    ("tenant_a", "/jobs", "/jobs", {**JOB, "name": "n" * 300}),
    ("tenant_a", "/jobs", "/jobs", {**JOB, "device": "tpu"}),
    ("tenant_a", "/jobs", "/jobs", {**JOB, "policy": "hasty"}),
    ("tenant_b", "/jobs", "/jobs", BIG),  # more than tenant_b has left to commit
    ("tenant_a", "/account", "/account/apply", {**APPLY, "programme_id": str(GHOST)}),
    ("tenant_a", "/account", "/account/apply", {**APPLY, "programme_id": "{programme}",
                                                "requested_yuan": "abc"}),
    ("tenant_a", "/account", "/account/apply", {**APPLY, "programme_id": "{programme}",
                                                "requested_yuan": "0"}),
    ("tenant_a", "/account", "/account/apply", {**APPLY, "programme_id": "{programme}",
                                                "planned_spend_yuan": "10"}),
    ("tenant_a", "/account", "/account/apply", {**APPLY, "programme_id": "{programme}",
                                                "requested_yuan": "90000"}),
    ("tenant_a", "/account", "/account/apply", {**APPLY, "programme_id": "{programme}",
                                                "planned_use": " "}),
    ("reviewer", "/review", "/review/{pending}", {"decision": "approve",
                                                  "approved_yuan": "abc"}),
    ("reviewer", "/review", "/review/{pending}", {"decision": "approve",
                                                  "approved_yuan": "99999999"}),
    ("reviewer", "/review", "/review/{pending}", {"decision": "maybe"}),
    ("reviewer", "/review", "/review/{pending}", {"decision": "reject", "reason": " "}),
    ("reviewer", "/review", f"/review/{GHOST}", {"decision": "approve"}),
    ("auditor", "/audit", f"/audit/clawback/{GHOST}", {"reason": " "}),
    ("auditor", "/audit", f"/audit/clawback/{GHOST}", {"reason": "重复"}),
    ("tenant_b", "/jobs", "/jobs/{job}/cancel", {}),
    ("tenant_a", "/jobs", f"/jobs/{GHOST}/cancel", {}),
    ("tenant_a", "/jobs", f"/jobs/{GHOST}/resubmit", {}),
    ("tenant_b", "/jobs", "/jobs/{job}/resubmit", {}),
    ("tenant_a", "/jobs", "/audit/verify", {}),
    ("reviewer", "/review", "/jobs", JOB),
]
# (who, a page that is not theirs or not there)
PAGES = [("tenant_a", "/review"), ("platform_admin", "/account"), ("tenant_a", "/center"),
         ("tenant_a", "/audit"), ("tenant_a", "/dashboard"), ("tenant_a", f"/jobs/{GHOST}"),
         ("tenant_b", "/jobs/{job}"), ("reviewer", "/jobs"), ("auditor", "/account")]


def _message(html: str) -> str:
    found = MESSAGE.search(html)
    assert found, html[:2000]
    return unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()


def _chinese(text: str, names: set[str]) -> None:
    assert CJK.search(text), f"no Chinese in {text!r}"
    english = [w for w in LATIN.findall(QUOTED.sub("", text)) if w not in KEPT | names]
    assert not english, f"English left in {text!r}: {english}"


@pytest.mark.parametrize(("who", "page", "action", "form"), FORMS,
                         ids=[f"{a} {f}" for _, _, a, f in FORMS])
def test_a_refused_form_says_why_in_chinese(town: Town, who: str, page: str, action: str,
                                            form: dict[str, str]) -> None:
    data = {k: v.format(**town.ids) for k, v in form.items()}
    r = town.portal(who).post(action.format(**town.ids), data={**data,
                                                               "csrf": town.csrf(who, page)})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    _chinese(_message(r.text), town.names)


@pytest.mark.parametrize(("who", "path"), PAGES)
def test_a_page_refused_says_why_in_chinese(town: Town, who: str, path: str) -> None:
    r = town.portal(who).get(path.format(**town.ids))
    assert r.status_code in (403, 404), (r.status_code, r.text[:300])
    _chinese(_message(r.text), town.names)


def _not_found_nouns() -> set[str]:
    """What the services say does not exist, as `NotFound(f"no NOUN {id}")` (the whole sentence)."""
    src = Path(__file__).resolve().parents[2] / "src" / "suanli"
    found = set()
    for path in src.rglob("*.py"):
        found |= set(re.findall(r'NotFound\(f"no ([A-Za-z ]+) \{[^}]+\}"\)', path.read_text()))
    return found


def test_every_thing_not_found_is_named_in_chinese() -> None:
    nouns = _not_found_nouns()
    assert {"job", "voucher programme", "tenant", "array"} <= nouns, nouns
    for noun in nouns:
        said = reason(f"no {noun} 7", "zh", UTC)
        assert CJK.search(said) and not LATIN.search(said), (noun, said)
