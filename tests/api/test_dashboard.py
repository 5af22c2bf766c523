"""The dashboard on a real server on loopback: the page and its files served by the app with nothing
from elsewhere, the snapshot behind the operator role, and the page itself in Debian's headless
Chromium — signed in with a user key (refused) then an operator key, drawing every panel from a
seeded store, updating live, and requesting nothing but the server. The screenshots are kept in
tests/artifacts/ (ignored by git)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from genesys.runtime.ab_router import Split
from genesys.runtime.settings import ApiKey
from genesys.runtime.store import Interaction, utcnow
from tests.conftest import LiveServer, start_live_server
from tests.support.browser import HeadlessChromium
from tests.support.dashboard_seed import DATASET, RUNNING_RUN, seed_dashboard

USER_KEY = "user-key-0123456789abcdef"
OPERATOR_KEY = "operator-key-0123456789abcdef"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ASSETS = ("app.js", "charts.js", "style.css")
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


@pytest.fixture()
def keyed_server(settings: Any, llama_engine: Any) -> Iterator[LiveServer]:
    settings.auth.keys = [
        ApiKey(name="dev", role="user", key=USER_KEY),
        ApiKey(name="ops", role="operator", key=OPERATOR_KEY),
    ]
    # Neither the rollout controller nor the alert rules may act during the test: the seeded adapters
    # have no files, and the page must show the seeded alerts as they are.
    settings.deploy.tick_seconds = 3600
    settings.alerts.enabled = False
    yield from start_live_server(settings, llama_engine)


def snapshot(server: LiveServer, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{server.api}/dashboard/snapshot", headers=headers, timeout=30)


def test_page_is_served_whole_and_snapshot_needs_an_operator(keyed_server: LiveServer) -> None:
    base = keyed_server.base_url
    page = httpx.get(f"{base}/dashboard", timeout=10)  # the page holds no data: no key needed
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(sources) == ["/dashboard/app.js", "/dashboard/charts.js", "/dashboard/style.css", "data:,"]
    for asset in ASSETS:
        response = httpx.get(f"{base}/dashboard/{asset}", timeout=10)
        assert response.status_code == 200, asset
        # No URL to anywhere: the only absolute one is the SVG namespace, which is never fetched.
        assert set(re.findall(r"https?://[^\s\"'`)]+", response.text)) <= {SVG_NAMESPACE}, asset
    assert (
        httpx.get(f"{base}/dashboard/app.js", timeout=10)
        .headers["content-type"]
        .startswith("text/javascript")
    )
    unknown = httpx.get(f"{base}/dashboard/jquery.js", timeout=10)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["param"] == "asset"

    anonymous = snapshot(keyed_server, None)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"
    user = snapshot(keyed_server, USER_KEY)
    assert user.status_code == 403
    assert user.json()["error"]["type"] == "permission_error"
    assert "'operator' role" in user.json()["error"]["message"]
    operator = snapshot(keyed_server, OPERATOR_KEY)
    assert operator.status_code == 200
    body = operator.json()
    assert set(body) == {
        "generated_at",
        "traffic",
        "kpis",
        "users",
        "training",
        "datasets",
        "rollout",
        "adapters",
        "serving",
        "viewer",
    }
    assert body["viewer"] == {"name": "ops", "role": "operator"}
    assert body["serving"]["auth"] == "api keys"
    assert body["serving"]["engine"] == "llamacpp"
    assert body["serving"]["ready"] is True
    assert len(body["traffic"]["series"]) == 60
    assert body["rollout"]["production"] == "base"


def test_snapshot_is_open_without_api_keys(live_server: LiveServer) -> None:
    """Loopback dev mode (no keys configured): everyone is admin, the page opens at once."""
    response = snapshot(live_server, None)
    assert response.status_code == 200
    body = response.json()
    assert body["serving"]["auth"] == "none"
    assert body["viewer"] == {"name": None, "role": "admin"}
    assert [k["status"] for k in body["kpis"]["data"]] == ["no_data"] * 6
    assert body["training"]["current"] is None and body["adapters"]["versions"] == []


# What the test reads from the page once it has drawn a snapshot.
READ_PAGE = """(() => {
  const all = (selector) => [...document.querySelectorAll(selector)];
  const text = (selector) => (document.querySelector(selector) || {}).textContent || "";
  return {
    kpis: Object.fromEntries(all("[data-kpi]").map((el) => [el.dataset.kpi,
      {status: el.dataset.status, value: el.querySelector(".kpi-value").textContent}])),
    latency: all("#chart-latency path.series").map((p) => [p.dataset.series, +p.dataset.points,
      p.getAttribute("d").length]),
    loss: all("#chart-loss path.series").map((p) => [p.dataset.series, +p.dataset.points]),
    bars: all("#chart-requests rect.bar").map((r) => [r.dataset.series, +r.dataset.value]),
    progress: document.getElementById("training-progress").getAttribute("aria-valuenow"),
    training: text("#training-status"),
    armHeads: all("#ab thead th[data-arm]").map((th) => th.textContent),
    armCells: all("#ab tbody td").length,
    split: text("#ab .split"),
    timeline: all("#timeline-chart .tl-event").map((g) => [g.dataset.version, g.dataset.kind]),
    events: all("#timeline-events li").map((li) => li.dataset.kind),
    users: all("#users tbody tr").map((tr) => tr.dataset.user),
    datasets: all("#datasets tbody tr").map((tr) => tr.dataset.version),
    alerts: text("#alerts"),
    alertRules: all("#alerts li.alert").map((li) =>
      [li.dataset.rule, li.classList.contains("firing") ? "firing" : "resolved"]),
    chips: text("#serving"),
    total: text("[data-stat=total] b"),
    live: text("#live-text"),
    who: text("#who"),
  };
})()"""


def type_key(browser: HeadlessChromium, key: str) -> None:
    browser.evaluate(
        f"document.getElementById('auth-key').value = {key!r};"
        "document.getElementById('auth-form').requestSubmit(); true"
    )


def test_dashboard_in_headless_chromium(keyed_server: LiveServer, tmp_path: Path) -> None:
    services = keyed_server.services
    seeded = seed_dashboard(services.store, keyed_server.settings, utcnow())
    # What the rollout controller does once the adapters' files load (the seed has none).
    services.router.set_split(Split("v1", "v3", 0.2))
    kpis = {
        k["name"]: k
        for k in httpx.get(
            f"{keyed_server.api}/kpis", headers={"Authorization": f"Bearer {OPERATOR_KEY}"}, timeout=30
        ).json()["data"]
    }

    with HeadlessChromium(tmp_path / "profile") as browser:
        browser.navigate(f"{keyed_server.base_url}/dashboard")
        browser.wait_for("document.body.dataset.state === 'auth'")
        type_key(browser, USER_KEY)
        browser.wait_for("document.body.dataset.state === 'denied'")
        refusal = browser.evaluate("document.getElementById('auth-message').textContent")
        assert "'operator' role" in refusal and "your key has 'user'" in refusal
        assert browser.evaluate("document.getElementById('board').hidden") is True
        ARTIFACTS.mkdir(exist_ok=True)
        browser.screenshot(ARTIFACTS / "dashboard-denied.png")

        type_key(browser, OPERATOR_KEY)
        browser.wait_for("document.body.dataset.state === 'ready'")
        browser.wait_for("document.querySelectorAll('#chart-latency path.series').length === 2")
        page = browser.evaluate(READ_PAGE)

        # The KPIs, as /v1/kpis computes them, against their targets.
        assert set(page["kpis"]) == set(kpis)
        success = kpis["success_rate"]
        assert page["kpis"]["success_rate"] == {
            "status": success["status"],
            "value": f"{success['value'] * 100:.1f}%",
        }
        assert page["kpis"]["response_time"]["value"] == f"{kpis['response_time']['value']:.2f} s"
        assert page["kpis"]["learning_rate"] == {"status": "no_data", "value": "–"}
        # Charts with their points: 30 minutes of traffic, 40 logged training steps.
        assert [name for name, _, _ in page["latency"]] == ["p50", "p95"]
        assert all(points >= 25 and length > 100 for _, points, length in page["latency"])
        assert page["loss"] == [["train loss", seeded.loss_points], ["eval loss", 4]]
        assert sum(v for name, v in page["bars"] if name == "answered") == 90 - seeded.errors
        assert sum(v for name, v in page["bars"] if name == "errors") == seeded.errors
        assert page["progress"] == "67"
        assert RUNNING_RUN in page["training"] and "step 200 / 300" in page["training"]
        # The A/B arms side by side.
        assert page["armHeads"] == ["production v1", "candidate v3"]
        assert page["armCells"] == 14
        assert "v1 · 80%" in page["split"] and "v3 · 20%" in page["split"]
        # The model versions: promotions and the rollback on the timeline.
        assert ["v2", "promotion"] in page["timeline"] and ["v1", "promotion"] in page["timeline"]
        assert ["v2", "rollback"] in page["timeline"] and ["v1", "restore"] in page["timeline"]
        assert len(page["timeline"]) == 13
        assert page["events"][0] == "canary" and "rollback" in page["events"]
        assert page["users"] == ["alice", "bob", "anonymous", "carol"]
        assert page["datasets"] == [DATASET]
        assert page["alertRules"] == [["error_rate", "firing"], ["latency_p95", "resolved"]]
        assert "6.7% of the requests of the last 30 min failed" in page["alerts"]
        assert "production v1" in page["chips"] and "candidate v3 · 20%" in page["chips"]
        assert "1 alert firing" in page["chips"]
        assert page["total"] == "90"
        assert page["live"].startswith("live · updated")
        assert page["who"] == "signed in as ops (operator)"

        browser.screenshot(ARTIFACTS / "dashboard.png")
        browser.screenshot(ARTIFACTS / "dashboard-full.png", full_page=True)

        # Live: new traffic shows at the next poll, without reloading the page.
        renders = int(browser.evaluate("document.body.dataset.renders"))
        now = utcnow()
        for k in range(5):
            services.store.interactions.record(
                Interaction(
                    id=f"chatcmpl-live-{k}",
                    conversation_id="conv-live",
                    user="dave",
                    request_messages=[{"role": "user", "content": "hi"}],
                    answer="hello",
                    model_version="v1",
                    latency_ms=700.0,
                    created_at=now,
                )
            )
        browser.wait_for(f"+document.body.dataset.renders > {renders}", timeout=15)
        browser.wait_for("document.querySelector('[data-stat=total] b').textContent === '95'", timeout=15)
        assert browser.evaluate("document.querySelector('#users tr[data-user=dave]') !== null")

        browser.evaluate("1")  # collect the events still queued
        assert browser.errors == []
        assert browser.requests, "the page requested nothing"
        outside = [
            url
            for url in browser.requests
            if urlparse(url).scheme not in ("data", "about") and urlparse(url).hostname != "127.0.0.1"
        ]
        assert outside == []
        assert f"{keyed_server.base_url}/v1/dashboard/snapshot" in browser.requests
        assert f"{keyed_server.base_url}/dashboard/charts.js" in browser.requests
