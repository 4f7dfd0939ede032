"""The dashboard in a real browser (Debian's Chromium via Selenium) against a repository
with real backups, a failed backup, a restore point and a drill: what a person sees."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from tests.support.browser import chrome
from tests.support.webrepo import WEB_TOKEN, build_web_repo

from posterity.cli.render import human_duration, human_size
from posterity.web import WebServer

SCREENSHOT = os.environ.get("POSTERITY_WEB_SCREENSHOT")  # e.g. docs/dashboard.png, to refresh it


@pytest.fixture(scope="module")
def served(tmp_path_factory, pg_cluster, s3_server):
    repo, dbname = build_web_repo(tmp_path_factory.mktemp("webb"), pg_cluster, s3_server)
    server = WebServer(repo.ctx, "127.0.0.1:0", WEB_TOKEN, cache_seconds=30)
    server.start()
    base = server.url.rstrip("/")
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(base + "/login", timeout=2)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield repo, base
    server.stop()
    pg_cluster.psql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@pytest.fixture(scope="module")
def browser():
    driver = chrome(timezone="Asia/Kolkata")  # UTC+05:30: local times visibly differ from UTC
    yield driver
    driver.quit()


def sign_in(driver, base: str) -> None:
    driver.get(base + "/")
    assert "needs its token" in driver.find_element(By.TAG_NAME, "h1").text
    assert not driver.find_elements(By.ID, "sources")  # nothing of the repository before the token
    driver.find_element(By.NAME, "token").send_keys(WEB_TOKEN)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "sources"))


def canvas_ink(driver, css: str) -> int:
    """How many pixels of the chart's canvas are drawn (non-transparent)."""
    return driver.execute_script(
        "const c = document.querySelector(arguments[0]); if (!c) return -1;"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n;", css)


def test_overview_shows_states_numbers_and_times(browser, served):
    repo, base = served
    sign_in(browser, base)
    rows = {r.get_attribute("data-source"): r for r in browser.find_elements(By.CSS_SELECTOR, "#sources tr[data-source]")}
    assert set(rows) == {"db", "down"}
    db_state = rows["db"].find_element(By.CSS_SELECTOR, ".state")
    down_state = rows["down"].find_element(By.CSS_SELECTOR, ".state")
    assert db_state.text.lower() == "ok" and down_state.text.lower() == "failing"
    last = repo.ctx.repo.manifests("db")[-1]
    assert human_size(last.size) in rows["db"].text
    assert "passed" in rows["db"].text and human_duration(repo.drill_rto) in rows["db"].text
    assert "never" in rows["down"].text
    assert "A source's last backup failed." in browser.find_element(By.ID, "verdict").text
    assert repo.point in browser.find_element(By.ID, "restorable").text
    # Times in the viewer's zone (+05:30 here), UTC on hover.
    t = rows["db"].find_element(By.TAG_NAME, "time")
    utc = t.get_attribute("datetime")
    assert t.get_attribute("title").endswith(" UTC") and t.get_attribute("title").startswith(utc[:10][:4])
    assert "UTC" not in t.text and t.text.strip()
    if SCREENSHOT:
        browser.save_screenshot(str(Path(SCREENSHOT)))


def test_source_page_draws_the_chart_and_retention(browser, served):
    repo, base = served
    browser.get(base + "/sources/db")
    chart = browser.find_element(By.CSS_SELECTOR, ".chart[data-chart=source]")
    assert chart.get_attribute("data-drawn") == "2"  # two backups, no failure of db
    assert canvas_ink(browser, ".chart[data-chart=source] canvas") > 500
    rows = browser.find_elements(By.CSS_SELECTOR, "#backups tr[data-backup]")
    assert [r.get_attribute("data-backup") for r in rows] == list(reversed(repo.db_backups))
    assert all(r.find_element(By.CSS_SELECTOR, ".verdict-cell").text == "keep" for r in rows)
    browser.get(base + "/sources/down")
    failures = browser.find_element(By.ID, "failures").text
    assert "connect" in failures.lower() or repo.failure_error[:30] in failures
    assert browser.find_element(By.CSS_SELECTOR, ".chart[data-chart=source]").get_attribute("data-drawn") == "1"


def test_drills_page_draws_rto_and_checks(browser, served):
    repo, base = served
    browser.get(base + "/drills")
    assert canvas_ink(browser, ".chart[data-chart=drills] canvas") > 200
    section = browser.find_element(By.CSS_SELECTOR, "section.drill")
    assert "passed" in section.text and human_duration(repo.drill_rto) in section.text
    assert "row counts" in section.text.lower() or section.find_elements(By.CSS_SELECTOR, "td.good")


def test_audit_filter_shows_only_failed_backups(browser, served):
    _, base = served
    browser.get(base + "/audit")
    ops = {r.get_attribute("data-op") for r in browser.find_elements(By.CSS_SELECTOR, "#audit tr[data-op]")}
    assert {"backup", "drill", "verify", "init"} <= ops
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.NAME, "op")).select_by_visible_text("backup")
    Select(browser.find_element(By.NAME, "result")).select_by_visible_text("failed")
    browser.find_element(By.CSS_SELECTOR, "#audit-filters button").click()
    WebDriverWait(browser, 10).until(lambda d: "result=failed" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#audit tr[data-op]")
    assert len(rows) == 1 and rows[0].get_attribute("data-result") == "failed" and "down" in rows[0].text


def test_phone_width_and_no_javascript(served):
    _, base = served
    driver = chrome(width=390, height=844, javascript=False)
    try:
        driver.get(base + "/")
        driver.find_element(By.NAME, "token").send_keys(WEB_TOKEN)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "sources"))
        rows = driver.find_elements(By.CSS_SELECTOR, "#sources tr[data-source]")
        assert len(rows) == 2 and all(r.is_displayed() for r in rows)
        assert "UTC" in rows[0].find_element(By.TAG_NAME, "time").text  # no script: UTC as written
        # The page itself never scrolls sideways; wide tables scroll inside their box.
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        driver.get(base + "/verify")
        assert "no problems" in driver.find_element(By.ID, "verify").text
    finally:
        driver.quit()
