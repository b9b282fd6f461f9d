"""The live dashboard in a real headless browser (Debian's chromium driven by Playwright) against
a real 3-node cluster: log in to node 1's admin, submit a command through the dashboard form, see
it appear live in node 2's dashboard, kill the leader and see the new leader, lose the websocket
and keep updating by polling.

Screenshots go to ``artifacts/dashboard/`` (gitignored) for a person to look at.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cluster import PROJECT, Cluster

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = PROJECT / "artifacts" / "dashboard"
PASSWORD = "browser-test-" + uuid.uuid4().hex[:8]
TIMEOUT_MS = 15_000


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium: apt-get install -y chromium")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_dashboard(context: Any, cluster: Cluster, node_id: int, errors: list[str]) -> Any:
    """Log in to the node's admin and follow the index's link to its dashboard."""
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("pageerror", lambda error: errors.append(f"node {node_id} page: {error}"))
    url = cluster.nodes[node_id].url
    page.goto(f"{url}/admin/login/?next=/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{url}/admin/")
    page.click("#dashboard-link")
    page.wait_for_url(f"{url}/dashboard/")
    page.wait_for_selector("#connection-state[data-mode=live]")
    page.wait_for_selector("#groups-table tr[data-role]")
    return page


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_dashboard_is_live_in_a_real_browser(cluster_factory, browser) -> None:
    from playwright.sync_api import expect

    cluster: Cluster = cluster_factory(admin_password=PASSWORD)
    errors: list[str] = []
    # One browser, one cookie jar: each node names its session cookie after its port, so being
    # logged in to node 1 and node 2 at once works like it does for a person.
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pages = {node_id: open_dashboard(context, cluster, node_id, errors) for node_id in (1, 2)}
    shot(pages[1], "01-node1-dashboard")
    pages[2].evaluate("window.testMarker = 'no reload'")

    # Submit through node 1's form; the result shows on node 1 ...
    request_id = f"browser-{uuid.uuid4().hex[:12]}"
    page1 = pages[1]
    page1.select_option("#submit-group", "1")
    page1.fill("#submit-request-id", request_id)
    page1.fill("#submit-command", json.dumps({"op": "put", "key": "from-browser", "value": "hi"}))
    page1.click("#submit-button")
    expect(page1.locator("#submit-result")).to_have_attribute("data-kind", "ok")
    instance = int(page1.inner_text("#submit-instance"))
    assert page1.inner_text("#submit-request-id-result") == request_id
    assert json.loads(page1.inner_text("#submit-result-value"))["value"] == "hi"
    page1.locator(f'#commits-group-1 li[data-request-id="{request_id}"]').wait_for()
    shot(page1, "02-node1-after-submit")

    # ... and the command appears in node 2's commit log without a reload.
    page2 = pages[2]
    row = page2.locator(f'#commits-group-1 tr[data-instance="{instance}"]')
    expect(row).to_contain_text(request_id)
    expect(row).to_contain_text("from-browser")
    assert page2.evaluate("window.testMarker") == "no reload"
    assert page2.evaluate("window.paxosDashboard.mode") == "live"
    shot(page2, "03-node2-commit-log")

    # The admin commit log finds the command by its request id.
    page1.goto(f"{cluster.nodes[1].url}/admin/consensus/instance/?q={request_id}")
    expect(page1.locator("#result_list")).to_contain_text(request_id)
    shot(page1, "04-admin-instance-search")

    # Kill the leader of group 1 and watch a surviving node's dashboard show the new one.
    old_leader = cluster.wait_for_leader(1)
    watcher = 2 if old_leader != 2 else 1
    page = pages[watcher]
    if watcher == 1:
        page.goto(f"{cluster.nodes[1].url}/dashboard/")
        page.wait_for_selector("#connection-state[data-mode=live]")
    group_row = page.locator('#groups-table tr[data-group="1"]')
    expect(group_row).to_have_attribute("data-leader", str(old_leader))
    cluster.kill_node(old_leader)
    new_leader = cluster.wait_for_leader(1, among=cluster.live_nodes())
    assert new_leader != old_leader
    expect(group_row).to_have_attribute("data-leader", str(new_leader))
    expect(page.locator(f'#peers-table tr[data-peer="{old_leader}"]')).to_contain_text("down")
    shot(page, "05-after-leader-killed")

    # Lose the websocket: the page falls back to polling, keeps updating, then reconnects.
    polls = page.evaluate("window.paxosDashboard.polls")
    page.evaluate("window.paxosDashboard.socket.close()")
    page.wait_for_function(f"window.paxosDashboard.polls > {polls}")
    page.wait_for_function("window.paxosDashboard.mode === 'live'")
    assert not errors, errors


@pytest.mark.parametrize(
    ("path", "rendered"),
    [("/api/docs/", ".opblock-summary-path"), ("/api/redoc/", "[data-section-id^='operation/']")],
)
def test_api_docs_render_from_the_node_alone(shared_cluster, browser, path, rendered) -> None:
    """The docs pages render their operations, and the browser sends nothing to any host but the
    node (consensus/api/docs.py): ReDoc's template linked Google Fonts, its menu shows a logo from
    cdn.redoc.ly (now refused by the page's Content-Security-Policy before it is sent)."""
    url = shared_cluster.nodes[1].url
    requested: list[str] = []
    refused: list[str] = []
    errors: list[str] = []

    def failed(request: Any) -> None:
        (refused if request.failure == "csp" else errors).append(request.url)

    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("request", lambda request: requested.append(request.url))
    page.on("requestfailed", failed)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{url}{path}")
    page.wait_for_selector(rendered)
    page.wait_for_load_state("networkidle")
    shot(page, "api" + path.replace("/", "-").rstrip("-"))
    local = (f"{url}/", "data:", "blob:")
    sent_elsewhere = [a for a in requested if not a.startswith(local) and a not in refused]
    assert not sent_elsewhere, sent_elsewhere
    assert not errors, errors
    if path == "/api/docs/":
        assert page.evaluate("ui.getConfigs().validatorUrl") is None
