"""``jeffreyctl dashboard`` in a real browser: headless Chromium (Debian packages) via Selenium.

The main scenario runs the unchanged operator with real Prometheus gates against the emulated
API, module simulators scraped by a real Prometheus, and the dashboard with the user's kind of
kubeconfig. The page is opened *before* the integration exists; without a reload it then shows
the climb rung by rung, the sparklines, a bus flood's rollback with its reason, and a pause
made with the keyboard through the confirmation dialog, which sets ``spec.paused`` in the API.
Other tests check what a person relies on: the CSRF refusal from the page's own origin,
read-only mode, a narrow screen, contrast, assets from this origin only, and that the page's
clock text agrees with ``jeffreyctl``'s. Screenshots land in ``.artifacts/dashboard/``.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from browser_fixtures import new_browser, screenshot
from jeffrey_emulator import BackgroundEmulator, Emulator, deployment_manifest
from jeffrey_operator.adapters.prometheus.gates import PrometheusGates
from jeffrey_operator.core.crdgen import crd
from jeffrey_operator.core.timestamps import format_time
from jeffrey_operator.ctl.client import connect
from jeffrey_operator.ctl.dashboard.server import BackgroundDashboard, DashboardOptions
from jeffrey_operator.ctl.render import format_age
from operator_fixtures import Cluster, wait_for
from prom_fixtures import PrometheusServer, SimulatorFleet

pytestmark = pytest.mark.slow

NS = "dash-browser"
LEVELS = {"CORE": ["memory", "neural-bus"], "COGNITIVE": ["auto-learner"], "LOOPS": ["awareness-loop"]}
JI = "jeffreyos.io/v1alpha1/jeffreyintegrations"


def integration(name: str, namespace: str, prometheus_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "jeffreyos.io/v1alpha1",
        "kind": "JeffreyIntegration",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "targetLevel": "LOOPS",
            "levels": [
                {"level": lv, "modules": [{"deployment": d} for d in ds]} for lv, ds in LEVELS.items()
            ],
            "promotion": {"readinessTimeout": "10s", "validationWindow": "2s", "cooldown": "0s"},
            "analysis": {"interval": "1s", "prometheus": {"url": prometheus_url, "timeout": "2s"}},
            "defaultGates": True,
        },
    }


def until(browser: Any, script: str, within: float = 30.0, what: str = "the page") -> Any:
    """Poll a JavaScript expression in the page until it is truthy."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = browser.execute_script("return " + script)
        if last:
            return last
        time.sleep(0.1)
    screenshot(browser, "timeout")
    raise AssertionError(f"timed out after {within}s waiting for {what}: {script} (last: {last!r})")


RUNG_STATE = "document.querySelector('#ladder .rung[data-level=\"{}\"]')?.dataset.state"
RECORDER = """
window.__marker = 'no reload';
window.__seen = [];
const record = () => {
  const rungs = [...document.querySelectorAll('#ladder .rung')]
    .filter((r) => r.dataset.state !== 'undefined')
    .map((r) => r.dataset.level + ':' + r.dataset.state + (r.classList.contains('is-current') ? '*' : ''));
  const line = rungs.reverse().join(' ');
  if (line && window.__seen[window.__seen.length - 1] !== line) window.__seen.push(line);
};
new MutationObserver(record).observe(document.getElementById('ladder'), {childList: true, subtree: true});
"""


@pytest.fixture(name="live")
def live_fixture(
    cluster: Cluster,
    prometheus: PrometheusServer,
    simulators: SimulatorFleet,
    tmp_path: pathlib.Path,
    chromium: tuple[str, str],
) -> Iterator[tuple[Cluster, BackgroundDashboard, str]]:
    simulators.start([d for ds in LEVELS.values() for d in ds], NS)
    cluster.emu.ensure_namespace(NS)  # namespaces are real objects in the emulator
    for deployments in LEVELS.values():
        for name in deployments:
            cluster.emu.create(deployment_manifest(name, NS, replicas=0))
    cluster.gates = PrometheusGates()
    cluster.start_operator()
    kubeconfig = cluster.emu.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)
    dashboard = BackgroundDashboard(DashboardOptions(port=0, namespace=None), connect(str(kubeconfig)))
    url = dashboard.start()
    try:
        yield cluster, dashboard, url
    finally:
        dashboard.stop()


def test_a_climb_a_rollback_and_a_pause_live_in_the_browser(
    live: tuple[Cluster, BackgroundDashboard, str],
    browser: Any,
    prometheus: PrometheusServer,
    simulators: SimulatorFleet,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    cluster, dashboard, url = live
    emu = cluster.emu
    browser.get(url + f"#/{NS}/climb")
    until(browser, "document.getElementById('connection').dataset.state === 'live'", what="the live stream")
    assert browser.find_element(By.ID, "missing").is_displayed()  # not created yet
    browser.execute_script(RECORDER)

    # ---------------------------------------------------------------- the climb, live
    emu.create(integration("climb", NS, prometheus.url))
    until(browser, "!document.getElementById('missing').offsetParent", what="the integration to appear")
    until(
        browser,
        RUNG_STATE.format("LOOPS") + " === 'up' && document.querySelector('#ladder .rung.is-current')"
        "?.dataset.level === 'LOOPS' && document.getElementById('detail-health').textContent === 'Healthy'",
        within=60,
        what="Stable at LOOPS",
    )
    seen: list[str] = browser.execute_script("return window.__seen")
    assert browser.execute_script("return window.__marker") == "no reload"
    assert any("CORE:validating" in s for s in seen), seen
    assert any("COGNITIVE:validating" in s and "CORE:up*" in s for s in seen), seen
    assert any("LOOPS:promoting" in s or "LOOPS:validating" in s for s in seen), seen
    assert seen[-1] == "CORE:up COGNITIVE:up LOOPS:up*", seen
    undefined = browser.find_elements(By.CSS_SELECTOR, "#ladder .rung.state-undefined")
    assert sorted(r.get_attribute("data-level") for r in undefined) == [
        "CONSCIOUS",
        "EMOTIONAL",
        "PRODUCTION",
    ]
    ready = browser.find_element(By.CSS_SELECTOR, '#ladder li.module[data-deployment="neural-bus"] .count')
    assert ready.text == "1/1"
    assert (
        "LOOPS"
        in browser.find_element(By.CSS_SELECTOR, "#ladder .rung.is-active, #ladder .rung .mark-target").text
    )

    # Gates with their values and sparklines from the real Prometheus.
    until(
        browser,
        "document.querySelectorAll('#gate-rows svg.spark').length > 0",
        within=40,
        what="sparklines",
    )
    status = browser.find_element(By.ID, "spark-status").text
    assert f"from Prometheus at {prometheus.url}" in status
    bus = browser.find_element(By.CSS_SELECTOR, '#gate-rows tr[data-gate="rollback-bus-rate"]')
    assert "<= 1000" in bus.text and bus.get_attribute("data-result") == "Pass"
    screenshot(browser, "stable")

    # ---------------------------------------------------------------- a rollback, with its reason
    loop = next(s for s in simulators.sims if s.module == "awareness-loop" and s.namespace == NS)
    loop.set_fault("flood")
    try:
        until(
            browser,
            "document.querySelector('#rollback .reason')?.textContent === 'GateBreach' && "
            "document.getElementById('detail-health').textContent === 'Degraded'",
            within=45,
            what="the rollback",
        )
        # Said to screen readers too (a polite live region).
        until(browser, "document.getElementById('announce').textContent.includes('RolledBack (GateBreach)')")
        rollback = browser.find_element(By.ID, "rollback").text
        assert "rollback-bus-rate" in rollback and "threshold 1000" in rollback
        assert "From level\nLOOPS" in rollback or "LOOPS" in rollback
        first = browser.find_element(By.CSS_SELECTOR, "#timeline li")
        assert first.get_attribute("data-phase") == "RolledBack"
        reasons = [
            li.get_attribute("data-reason") for li in browser.find_elements(By.CSS_SELECTOR, "#timeline li")
        ]
        assert "GateBreach" in reasons
        until(browser, RUNG_STATE.format("CORE") + " === 'up'", what="CORE up after the rollback")
        assert (
            browser.execute_script("return document.querySelector('#ladder .rung.is-current')?.dataset.level")
            == "CORE"
        )
        # No gate is evaluated while RolledBack, yet the breaching gate's recent values show the flood.
        until(
            browser,
            "document.querySelector('#gate-rows tr[data-gate=\"rollback-bus-rate\"] svg.spark') && "
            "window.jeffreyDashboard.state.sparks.gates['rollback-bus-rate'].max > 1000",
            within=30,
            what="the flood in the sparkline",
        )
        browser.set_window_size(1280, 1500)  # the whole page: ladder, gates, rollback, timeline
        screenshot(browser, "rolled-back")
        browser.set_window_size(1280, 900)
    finally:
        loop.set_fault("none")

    # ---------------------------------------------------------------- pause, by keyboard, confirmed
    pause = browser.find_element(By.ID, "btn-pause")
    pause.send_keys(Keys.ENTER)
    until(browser, "document.getElementById('confirm').open", what="the confirmation dialog")
    dialog = browser.find_element(By.ID, "confirm")
    assert "Pause dash-browser/climb?" in dialog.text
    assert "spec.paused: false -> true" in dialog.text
    assert not emu.get(JI, NS, "climb")["spec"].get("paused")  # nothing happens before confirming
    assert browser.execute_script("return document.activeElement.id") == "confirm-cancel"
    browser.switch_to.active_element.send_keys(Keys.TAB)
    assert browser.execute_script("return document.activeElement.id") == "confirm-ok"
    screenshot(browser, "confirm-pause")
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for(lambda: emu.get(JI, NS, "climb")["spec"].get("paused") is True, within=10, what="spec.paused")
    until(
        browser,
        "document.getElementById('detail-health').textContent === 'Suspended' && "
        "!document.getElementById('btn-resume').hidden && document.getElementById('btn-pause').hidden",
        what="the page to show the pause",
    )
    assert "spec.paused: false -> true" in browser.find_element(By.ID, "action-result").text

    # The overview: sortable, colour-coded, from the same stream.
    browser.find_element(By.CSS_SELECTOR, ".back a").click()
    until(
        browser,
        f"document.querySelector('#rows tr[data-key=\"{NS}/climb\"]')?.dataset.health === 'Suspended'",
    )
    row = browser.find_element(By.CSS_SELECTOR, f'#rows tr[data-key="{NS}/climb"]')
    assert "GateBreach" in row.text and "CORE" in row.text
    screenshot(browser, "overview")
    assert browser.execute_script("return window.__marker") == "no reload"

    # One watch for the whole process, whatever the tabs: no list or get per tab, no polling.
    for _ in range(2):
        browser.switch_to.new_window("tab")
        browser.get(url)
        until(browser, "document.querySelectorAll('#rows tr').length > 0", what="another tab")
    # (The operator lists and watches cluster-wide too, so count at the dashboard's one watcher.)
    watcher = dashboard.dashboard.watcher
    assert watcher is not None and watcher.lists == 0  # the first list only, at start-up
    assert 1 <= watcher.watches <= 3  # one stream at a time, renewed every 30 s
    assert dashboard.run(_subscribers(dashboard)) == 3  # three tabs, three event streams
    for handle in browser.window_handles[1:]:
        browser.switch_to.window(handle)
        browser.close()
    browser.switch_to.window(browser.window_handles[0])


def _apply(dashboard: BackgroundDashboard, body: dict[str, Any]) -> Any:
    async def apply() -> None:
        dashboard.hub.apply("MODIFIED", body)

    return apply()


def _subscribers(dashboard: BackgroundDashboard) -> Any:
    async def count() -> int:
        return dashboard.hub.subscribers

    return count()


# ----------------------------------------------------------------------- what a person relies on


@pytest.fixture(scope="module", name="still")
def still_fixture(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Emulator, str, str, BackgroundDashboard]]:
    """An emulator with fixed statuses (no operator) and two dashboards: read-write and read-only."""
    background = BackgroundEmulator(crds=[crd()], namespaces=("default", "alpha", "beta"))
    emu = background.start()
    kubeconfig = emu.write_kubeconfig(tmp_path_factory.mktemp("still") / "kubeconfig", namespace="alpha")
    statuses = {
        ("alpha", "stable"): {"phase": "Stable", "currentLevel": "LOOPS", "observedGeneration": 1},
        ("alpha", "climbing"): {
            "phase": "Validating",
            "activeLevel": "COGNITIVE",
            "currentLevel": "CORE",
            "observedGeneration": 1,
            "phaseSince": format_time(datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=60)),
        },
        ("beta", "broken"): {
            "phase": "RolledBack",
            "currentLevel": "CORE",
            "observedGeneration": 1,
            "lastRollback": {
                "time": "2026-12-01T08:00:00.000Z",
                "reason": "ModuleUnready",
                "fromLevel": "COGNITIVE",
                "message": "auto-learner not ready",
            },
        },
        ("beta", "frozen"): {"phase": "Paused", "observedGeneration": 1},
    }
    for (namespace, name), status in statuses.items():
        body = integration(name, namespace, "http://127.0.0.1:9")
        if name == "climbing":
            body["spec"]["promotion"]["validationWindow"] = "1h"
        if name == "stable":  # synced by Argo CD: steering it gets a warning
            body["metadata"]["annotations"] = {
                "argocd.argoproj.io/tracking-id": "jeffrey:jeffreyos.io/JeffreyIntegration:alpha/stable"
            }
        emu.create(body)
        emu.store.set_status("ji", namespace, name, status)
    dashboards = [
        BackgroundDashboard(DashboardOptions(port=0, read_only=ro), connect(str(kubeconfig)))
        for ro in (False, True)
    ]
    urls = [d.start() for d in dashboards]
    try:
        yield emu, urls[0], urls[1], dashboards[0]
    finally:
        for d in dashboards:
            d.stop()
        background.stop()


def test_the_page_refuses_a_write_without_the_token(
    still: tuple[Emulator, str, str, BackgroundDashboard], browser: Any
) -> None:
    emu, url, _, _ = still
    browser.get(url + "#/alpha/stable")
    until(browser, "document.getElementById('detail-title').textContent === 'alpha/stable'")
    script = """
    const done = arguments[arguments.length - 1];
    const post = (headers) => fetch('/api/steer/alpha/stable/pause', {method: 'POST', headers: headers,
        body: '{}'}).then(async (r) => [r.status, (await r.json()).error || '']);
    Promise.all([post({'Content-Type': 'application/json'}),
                 post({'Content-Type': 'application/json', 'X-CSRF-Token': 'forged'})]).then(done);
    """
    answers = browser.execute_async_script(script)
    assert [a[0] for a in answers] == [403, 403]
    assert "X-CSRF-Token" in answers[0][1]
    assert not emu.get(JI, "alpha", "stable")["spec"].get("paused")


def test_read_only_shows_no_buttons_and_refuses_writes(
    still: tuple[Emulator, str, str, BackgroundDashboard], browser: Any
) -> None:
    emu, url, read_only, _ = still
    browser.get(read_only + "#/beta/broken")
    until(browser, "document.querySelector('#rollback .reason')?.textContent === 'ModuleUnready'")
    assert browser.execute_script("return document.getElementById('actions')") is None
    assert browser.execute_script("return document.querySelectorAll('#detail button').length") == 0
    assert "read-only" in browser.find_element("id", "mode").text
    browser.get(url)
    token = browser.execute_script("return document.querySelector('meta[name=\"csrf-token\"]').content")
    browser.get(read_only)
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/steer/beta/broken/retry', {method: 'POST', headers: {'X-CSRF-Token': arguments[0]},"
        " body: '{}'}).then((r) => done(r.status));",
        token,
    )
    assert status == 403
    assert "jeffreyos.io/retry" not in (emu.get(JI, "beta", "broken")["metadata"].get("annotations") or {})


def test_overview_sorts_and_badges_are_readable(
    still: tuple[Emulator, str, str, BackgroundDashboard], browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    _, url, _, _ = still
    browser.get(url)
    until(browser, "document.querySelectorAll('#rows tr').length === 4")

    def keys() -> list[str]:
        return list(
            browser.execute_script(
                "return [...document.querySelectorAll('#rows tr')].map(r => r.dataset.key)"
            )
        )

    assert keys() == ["alpha/climbing", "alpha/stable", "beta/broken", "beta/frozen"]
    health = browser.execute_script(
        "return [...document.querySelectorAll('#rows tr')].map(r => r.dataset.health)"
    )
    assert health == ["Progressing", "Healthy", "Degraded", "Suspended"]
    browser.find_element(By.CSS_SELECTOR, 'th[data-sort="current"] button').click()
    assert keys()[-1] == "alpha/stable"  # LOOPS is the highest current level
    browser.find_element(By.CSS_SELECTOR, 'th[data-sort="current"] button').click()
    assert keys()[0] == "alpha/stable"
    assert (
        browser.find_element(By.CSS_SELECTOR, 'th[data-sort="current"]').get_attribute("aria-sort")
        == "descending"
    )
    # WCAG AA: 4.5:1 for the text of every badge against its background, as rendered.
    ratios = browser.execute_script(
        """
        const lum = (c) => { const [r, g, b] = c.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number).map((v) => {
            v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
          return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
        return [...document.querySelectorAll('.badge, .result')].map((e) => {
          const s = getComputedStyle(e); const a = lum(s.color), b = lum(s.backgroundColor);
          return [e.textContent, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]; });
        """
    )
    assert ratios and all(r >= 4.5 for _, r in ratios), ratios


def test_narrow_screen_assets_and_clock_text(
    still: tuple[Emulator, str, str, BackgroundDashboard], chromium: tuple[str, str]
) -> None:
    _, url, _, _ = still
    phone = new_browser(*chromium, width=390, height=844)
    try:
        # A phone's viewport (headless windows have a minimum width of their own).
        phone.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True},
        )
        phone.get(url)
        until(phone, "document.querySelectorAll('#rows tr').length === 4")
        assert phone.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        screenshot(phone, "narrow-overview")
        phone.get(url + "#/beta/broken")
        until(phone, "document.querySelector('#rollback .reason')?.textContent === 'ModuleUnready'")
        assert phone.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        screenshot(phone, "narrow-detail")

        # Every resource the page loaded came from the dashboard itself (no CDN, no web font).
        origin = url.rstrip("/")
        resources = phone.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
        assert resources and all(r.startswith(origin + "/") for r in resources), resources
        timing = phone.execute_script(
            "const n = performance.getEntriesByType('navigation')[0];"
            "return [n.domContentLoadedEventEnd - n.startTime, n.loadEventEnd - n.startTime, n.transferSize]"
        )
        sizes = phone.execute_script(
            "return performance.getEntriesByType('resource')"
            ".map((e) => [e.name.split('/').pop(), e.encodedBodySize])"
        )
        print(
            f"\ndashboard page: DOMContentLoaded {timing[0]:.0f} ms, load {timing[1]:.0f} ms; assets {sizes}"
        )

        # The page's "3m12s ago" is jeffreyctl's: the same function on both sides.
        samples = [0, 4.2, 59.9, 60, 75, 599, 600, 612, 7199, 7200, 172799, 200000]
        in_page = phone.execute_script("return arguments[0].map(window.jeffreyDashboard.formatAge)", samples)
        assert in_page == [format_age(s) for s in samples]
        errors = [e for e in phone.get_log("browser") if e.get("level") == "SEVERE"]
        assert errors == [], json.dumps(errors)
    finally:
        phone.quit()


def test_time_left_runs_in_the_page_and_checks_and_notifications_show(
    still: tuple[Emulator, str, str, BackgroundDashboard], browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    emu, url, _, dashboard = still
    # status.checks (level checks, docs/checks.md) and status.notifications (being built now): the
    # page shows them whatever their exact schema. The CRD does not have notifications yet (the API
    # would prune them), so this object reaches the dashboard as its watch would deliver it.
    body = dict(emu.get(JI, "alpha", "climbing"))
    body["status"] = {
        **body["status"],
        "checks": [
            {"name": "smoke", "level": "COGNITIVE", "result": "Pass", "attempt": 1, "message": "HTTP 200"}
        ],
        "notifications": [
            {"name": "slack", "result": "Sent", "url": "https://hooks.slack.com/services/T000/B000/XXXX"}
        ],
    }
    body["metadata"] = {**body["metadata"], "resourceVersion": "999999"}
    dashboard.run(_apply(dashboard, body))
    browser.get(url + "#/alpha/climbing")
    until(browser, "!document.getElementById('waiting').hidden", what="the validation window")
    label = browser.find_element(By.ID, "waiting-label").text
    assert label.startswith("Validation window of COGNITIVE: 5") and label.endswith("left of 3600s"), label
    first = browser.execute_script("return document.getElementById('waiting-bar').value")
    time.sleep(1.5)  # no event arrives meanwhile: the page runs the clock itself
    second = browser.execute_script("return document.getElementById('waiting-bar').value")
    assert 60 <= first < second <= first + 5, (first, second)
    assert browser.find_element(By.ID, "waiting-bar").get_attribute("max") == "3600"

    checks = browser.find_element(By.ID, "checks-section")
    assert checks.is_displayed() and "smoke COGNITIVE" in checks.text and "Pass" in checks.text
    notes = browser.find_element(By.ID, "notifications-section")
    assert notes.is_displayed() and "slack" in notes.text and "Sent" in notes.text
    assert "hooks.slack.com" not in browser.page_source
    # This object's Prometheus (port 9, nothing there) cannot be reached: the page says so.
    until(browser, "document.getElementById('spark-status').dataset.available === 'false'")
    assert browser.find_element(By.ID, "spark-status").text.startswith(
        "Prometheus at http://127.0.0.1:9 is not reachable from the dashboard ("
    )
    screenshot(browser, "validating")


def test_a_lost_api_is_said_on_the_page(tmp_path: pathlib.Path, browser: Any) -> None:
    background = BackgroundEmulator(crds=[crd()], namespaces=("default", "alpha"))
    emu = background.start()
    kubeconfig = emu.write_kubeconfig(tmp_path / "kubeconfig", namespace="alpha")
    emu.create(integration("lonely", "alpha", "http://127.0.0.1:9"))
    dashboard = BackgroundDashboard(DashboardOptions(port=0, namespace="alpha"), connect(str(kubeconfig)))
    url = dashboard.start()
    try:
        browser.get(url)
        until(browser, "document.getElementById('connection').dataset.state === 'live'")
        background.stop()
        until(browser, "document.getElementById('connection').dataset.state === 'lost'", within=40)
        text = browser.find_element("id", "connection").text
        assert text.startswith("Lost the Kubernetes API: ") and "retrying" in text, text
        # What was seen last stays on the page.
        assert browser.execute_script("return document.querySelectorAll('#rows tr').length") == 1
    finally:
        dashboard.stop()
        background.stop()


def test_keyboard_only_with_the_argo_cd_warning_and_escape(
    still: tuple[Emulator, str, str, BackgroundDashboard], browser: Any
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    emu, url, _, _ = still
    browser.get(url)
    until(browser, "document.querySelectorAll('#rows tr').length === 4")

    def tab_to(check: str, limit: int = 40) -> None:
        for _ in range(limit):
            ActionChains(browser).send_keys(Keys.TAB).perform()
            if browser.execute_script("return " + check):
                return
        raise AssertionError(f"not reachable with Tab: {check}")

    tab_to("document.activeElement.getAttribute('href') === '#/alpha/stable'")
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    until(browser, "document.getElementById('detail-title').textContent === 'alpha/stable'")
    assert browser.execute_script("return document.activeElement.id") == "detail-title"
    tab_to("document.activeElement.id === 'btn-pause'")
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    until(browser, "document.getElementById('confirm').open")
    warning = browser.find_element("id", "confirm-warning").text
    assert "managed by Argo CD (Application 'jeffrey'" in warning and "make the change in Git" in warning
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    until(browser, "!document.getElementById('confirm').open")
    assert browser.execute_script("return document.activeElement.id") == "btn-pause"
    assert not emu.get(JI, "alpha", "stable")["spec"].get("paused")  # Escape changed nothing
