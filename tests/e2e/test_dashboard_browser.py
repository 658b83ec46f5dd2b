"""The dashboard in a real browser (Debian's chromium, headless, driven by Selenium through the system
chromedriver), on a running experiment: the counts move without a reload, the trials table filters,
a failed trial shows its traceback, Cancel with the token empties the queue and the workers go idle,
and without the token no action is possible. Screenshots of each step go to HYPERFLEET_SCREENSHOT_DIR
(default: the test's tmp_path)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from hyperfleet.store import JOB_STATE_NEW, JOB_STATE_RUNNING
from tests.helpers import jobs, run_cli, start_dashboard, start_worker, stop_all, wait_for
from tests.components import component_missing, needs

TOKEN = "browser-t0ken"
BROWSER, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    needs("browser")
    if not (os.access(BROWSER, os.X_OK) and shutil.which(DRIVER)):
        component_missing("browser", "no chromium/chromedriver: run make browser (Debian's chromium and chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.set_script_timeout(10)
    yield driver
    driver.quit()


@pytest.fixture
def shots(tmp_path):
    folder = Path(os.environ.get("HYPERFLEET_SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)

    def take(driver, name: str) -> None:
        driver.save_screenshot(str(folder / f"{name}.png"))
    take.folder = folder
    return take


def text(driver, css: str) -> str:
    """The element's text, "" while the page has not drawn it (read in the page: the view is redrawn
    every 2 s, so an element handle taken from outside may be gone a moment later)."""
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : ''", css)


def disabled(driver, css: str) -> bool:
    return driver.execute_script("const e = document.querySelector(arguments[0]); return !!(e && e.disabled)", css)


def fetch_status(driver, method: str, path: str, token: str | None) -> int:
    """The HTTP status the page's own fetch gets for an action."""
    return driver.execute_async_script(
        "const [method, path, token, done] = arguments;"
        "fetch(path, {method, headers: token ? {Authorization: 'Bearer ' + token} : {}}).then(r => done(r.status));",
        method, path, token)


def _alert(driver):
    from selenium.common.exceptions import NoAlertPresentException

    try:
        alert = driver.switch_to.alert
        alert.text  # noqa: B018 - raises when there is none
        return alert
    except NoAlertPresentException:
        return None


@pytest.mark.timeout(300)
def test_watch_filter_open_a_failure_and_cancel_in_a_browser(browser, shots, mongo_url, tmp_path):
    from selenium.webdriver.common.by import By

    spec = {"name": "live", "objective": "tests.objectives:slow_mixed", "algo": "rand", "max_evals": 400, "seed": 3,
            "parallelism": 4, "space": {"x": {"uniform": [2, 6]}, "lr": {"loguniform": [1e-5, 1e-1]},
                                        "opt": {"choice": ["sgd", "adam"]}, "sleep": {"choice": [0.4]}}}
    (tmp_path / "live.yaml").write_text(yaml.safe_dump(spec))
    workers = [start_worker(mongo_url, "--log-level", "error") for _ in range(2)]
    driver = run_cli(mongo_url, tmp_path / "live.yaml", stdout=subprocess.DEVNULL)
    dashboard, base = start_dashboard(mongo_url, token=TOKEN)
    readonly, readonly_base = start_dashboard(mongo_url)
    try:
        # 1. the counts move without a reload
        wait_for(lambda: jobs(mongo_url).count_documents({"exp_key": "live", "state": 3}) >= 1, 60)
        browser.get(f"{base}/#/exp/live")
        try:
            wait_for(lambda: text(browser, "#count-done b").isdigit(), 20, 0.1)
        finally:
            shots(browser, "0-first-render")
        browser.execute_script("window.stillTheSamePage = true")
        first = int(text(browser, "#count-done b")) + int(text(browser, "#count-error b"))
        wait_for(lambda: int(text(browser, "#count-done b")) + int(text(browser, "#count-error b")) >= first + 3, 30, 0.2)
        assert browser.execute_script("return window.stillTheSamePage") is True
        assert int(browser.execute_script("return document.querySelector('#plot-time canvas').dataset.points")) >= 1
        shots(browser, "1-experiment-live")

        # 2. filter the table: failed trials only (the page redraws every 2 s: act and read through JS)
        browser.execute_script("const s = document.getElementById('filter-state');"
                               "s.value = 'error'; s.dispatchEvent(new Event('change'));")
        row_states = "return [...document.querySelectorAll('#trials tr[data-tid]')].map(r => r.dataset.state)"
        wait_for(lambda: (lambda states: states and set(states) == {"error"})(browser.execute_script(row_states)), 20, 0.2)
        assert browser.execute_script("return document.getElementById('filter-state').value") == "error"
        shots(browser, "2-filtered-errors")

        # 3. a failed trial's page shows its traceback
        browser.execute_script("document.querySelector('#trials tr[data-state=error] a').click()")
        wait_for(lambda: text(browser, "#traceback"), 20, 0.1)
        assert "ValueError" in text(browser, "#traceback") and "out of range" in text(browser, "#traceback")
        assert text(browser, "#trial-state") == "error"
        shots(browser, "3-failed-trial")

        # 5 (first: nothing is cancelled yet). Without a token: no action is possible, and the API refuses
        browser.get(f"{readonly_base}/#/exp/live")
        wait_for(lambda: "Actions are off" in text(browser, "#actions-note"), 20, 0.1)
        wait_for(lambda: text(browser, "#cancel"), 20, 0.1)
        assert disabled(browser, "#cancel") and disabled(browser, "#delete")
        assert fetch_status(browser, "POST", "/api/experiments/live/cancel", TOKEN) == 403
        shots(browser, "5-no-token")
        browser.get(f"{base}/#/exp/live")
        wait_for(lambda: text(browser, "#cancel"), 20, 0.1)
        assert not disabled(browser, "#cancel")
        assert fetch_status(browser, "POST", "/api/experiments/live/cancel", None) == 401
        assert fetch_status(browser, "POST", "/api/experiments/live/cancel", "wrong") == 401
        assert jobs(mongo_url).count_documents({"exp_key": "live", "state": JOB_STATE_NEW}) >= 1  # still queuing

        # 4. cancel with the token: the queue empties, the driver ends, the workers go idle
        token = browser.find_element(By.ID, "token")  # in the header: not redrawn
        token.send_keys(TOKEN)
        browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", token)
        browser.execute_script("setTimeout(() => document.getElementById('cancel').click(), 0)")
        wait_for(lambda: _alert(browser), 10, 0.1).accept()
        assert driver.wait(60) == 0
        assert jobs(mongo_url).count_documents({"exp_key": "live", "state": {"$in": [JOB_STATE_NEW, JOB_STATE_RUNNING]}}) == 0
        try:
            wait_for(lambda: text(browser, "#cancel") == "Cancelled" and text(browser, "#count-new b") == "0"
                     and text(browser, "#count-running b") == "0" and int(text(browser, "#count-cancelled b")) >= 1
                     and text(browser, "#count-eta b") == "done", 20, 0.2)
        finally:
            shots(browser, "4-cancelled")
    finally:
        stop_all([dashboard, readonly, *workers])
        if driver.poll() is None:
            driver.kill()
    print(f"\nscreenshots: {shots.folder}")


@pytest.mark.timeout(180)
def test_with_read_token_the_page_shows_nothing_until_given_the_token(browser, shots, mongo_url, tmp_path):
    from selenium.webdriver.common.by import By

    spec = {"name": "private", "objective": "tests.objectives:slow_mixed", "algo": "rand", "max_evals": 4, "seed": 3,
            "parallelism": 2, "space": {"x": {"uniform": [2, 3]}, "lr": {"loguniform": [1e-5, 1e-1]},
                                        "opt": {"choice": ["sgd"]}, "sleep": {"choice": [0.0]}}}
    (tmp_path / "private.yaml").write_text(yaml.safe_dump(spec))
    workers = [start_worker(mongo_url, "--log-level", "error")]
    try:
        assert run_cli(mongo_url, tmp_path / "private.yaml", stdout=subprocess.DEVNULL).wait(60) == 0
    finally:
        stop_all(workers)
    dashboard, base = start_dashboard(mongo_url, "--read-token", token=TOKEN)
    try:
        browser.get(f"{base}/#/")
        wait_for(lambda: "needs its token" in text(browser, "#view"), 20, 0.1)
        assert "private" not in browser.page_source and not browser.find_elements(By.ID, "experiments")
        assert fetch_status(browser, "GET", "/api/experiments", None) == 401
        shots(browser, "6-read-token-asked")
        token = browser.find_element(By.ID, "token")
        token.send_keys("wrong")
        browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", token)
        wait_for(lambda: "valid token" in text(browser, "#message"), 20, 0.1)
        assert "private" not in text(browser, "#view")
        token.clear()
        token.send_keys(TOKEN)
        browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", token)
        wait_for(lambda: text(browser, "#experiments tr[data-key=private] td.name"), 20, 0.1)
        assert text(browser, "#message") == ""
        browser.get(f"{base}/#/exp/private")  # the token stays for the tab: the next page reads with it
        wait_for(lambda: text(browser, "#count-done b").isdigit() or text(browser, "#count-error b").isdigit(), 20, 0.1)
        shots(browser, "7-read-token-given")
    finally:
        stop_all([dashboard])


def canvas_colours(driver, css: str) -> dict:
    """How many pixels of the canvas are drawn in the pruned grey and in the curves' blue (read in the page)."""
    return driver.execute_script("""
        const c = document.querySelector(arguments[0]);
        if (!c) return {grey: 0, blue: 0};
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let grey = 0, blue = 0;
        for (let i = 0; i < d.length; i += 4) {
          const [r, g, b, a] = [d[i], d[i + 1], d[i + 2], d[i + 3]];
          if (a < 40) continue;
          if (Math.abs(r - 190) < 8 && Math.abs(g - 190) < 8 && Math.abs(b - 190) < 8) grey++;
          else if (Math.abs(r - 31) < 8 && Math.abs(g - 119) < 8 && Math.abs(b - 180) < 8) blue++;
        }
        return {grey, blue};""", css)


@pytest.mark.timeout(240)
def test_learning_curves_draw_a_line_per_trial_and_pruned_ones_in_grey(browser, shots, mongo_url, tmp_path):
    """An experiment under the median rule, live: the page draws one curve per trial that reported (loss
    against step), the pruned ones in grey, counts them, and marks them in the table."""
    spec = {"name": "curves", "objective": "tests.objectives:learning_curve", "algo": "rand", "max_evals": 12,
            "seed": 3, "parallelism": 2, "pruning": {"rule": "median", "warmup_steps": 1, "min_trials": 2},
            "space": {"level": {"uniform": [0, 4]}, "steps": {"choice": [8]}, "sleep": {"choice": [0.15]},
                      "log": {"choice": [str(tmp_path / "steps.log")]}}}
    (tmp_path / "curves.yaml").write_text(yaml.safe_dump(spec))
    workers = [start_worker(mongo_url, "--log-level", "error") for _ in range(2)]
    driver = run_cli(mongo_url, tmp_path / "curves.yaml", stdout=subprocess.DEVNULL)
    dashboard, base = start_dashboard(mongo_url)
    curves = "#plot-curves canvas"
    try:
        browser.get(f"{base}/#/exp/curves")
        data = "const c = document.querySelector(arguments[0]); return c ? [+c.dataset.curves, +c.dataset.pruned] : [0, 0]"
        try:
            wait_for(lambda: (lambda n: n[0] >= 4 and n[1] >= 1)(browser.execute_script(data, curves)), 90, 0.2)
        finally:
            shots(browser, "8-learning-curves")
        drawn = canvas_colours(browser, curves)
        assert drawn["grey"] > 20 and drawn["blue"] > 20, drawn  # lines, in both colours
        wait_for(lambda: text(browser, "#count-pruned b").isdigit() and int(text(browser, "#count-pruned b")) >= 1, 20, 0.1)
        # the trials table marks them
        wait_for(lambda: "(pruned)" in text(browser, "#trials tr[data-pruned] td:nth-child(2)"), 20, 0.1)
        assert driver.wait(120) == 0
        # once it ended: as many curves as trials reported, as many grey as the database says were pruned
        store_pruned = jobs(mongo_url).count_documents({"exp_key": "curves", "hyperfleet.pruned": {"$exists": True}})
        wait_for(lambda: browser.execute_script(data, curves) == [12, store_pruned]
                 and text(browser, "#count-pruned b") == str(store_pruned), 20, 0.2)
        shots(browser, "9-learning-curves-done")
    finally:
        stop_all([dashboard, *workers])
        if driver.poll() is None:
            driver.kill()
