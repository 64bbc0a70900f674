"""The built-in dashboard in a real headless browser, against running services.

The assignment, analytics and guardrails services and the public entry run as
processes of their own; an experiment is created through the entry and fed
with a known set of serves and rewards through the topics. Debian's chromium,
driven through chromedriver, opens the page with the read token and must show
those numbers, draw the charts, page through the event log and download the
export as a CSV file. The screenshot is kept under the test's folder and as
``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import asyncio
import csv
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from cineamate.analytics.queries import event_columns
from cineamate.common.events import Event, RewardedItem, RewardEvent, ServedItem, ServeEvent
from cineamate.common.kafka import EventProducer, OutgoingMessage
from cineamate.stack.services import port_variable
from cineamate.stack.testing import (
    ADMIN,
    TEST_TOKENS,
    provision,
    requires_program,
    start_service,
    stop_service,
    unique,
    wait_for_status,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARTIFACT = Path(__file__).resolve().parents[3] / "test-artifacts" / "dashboard.png"
SERVICES = ("assignment", "analytics", "guardrails")
UPSTREAMS = ("assignment", "policy", "reward", "guardrails", "decision", "analytics")
# Click-through rate per variant; the serves alternate between the variants.
CTR = {"control": 0.10, "ts": 0.35, "egreedy": 0.22}
SERVES = 60
SLATE = 2
EVENTS_PER_PAGE = 25
WAIT_SECONDS = 60


@dataclass(frozen=True)
class Platform:
    env: dict[str, str]
    entry: str
    experiment_id: str


def _start_gateway(env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    # Its /readyz waits for all six services; this test runs only the ones the page reads.
    with (logs / "gateway.log").open("wb") as log:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "cineamate.cli", "serve", "gateway"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wait_for_status(f"http://127.0.0.1:{env[port_variable('gateway')]}/healthz", process=gateway)
    return gateway


def _create_experiment(entry: str) -> str:
    with httpx.Client(base_url=entry, headers=ADMIN, timeout=10) as http:
        created = http.post(
            "/api/experiments",
            json={
                "name": "Dashboard in a browser",
                "catalogue": list(range(1, 9)),
                "policies": [
                    {"name": "control", "type": "random", "control": True},
                    {"name": "ts", "type": "thompson", "weight": 2.0},
                    {"name": "egreedy", "type": "egreedy"},
                ],
                "traffic": 1.0,
                "slate_size": SLATE,
            },
        )
        assert created.status_code == 201, created.text
        experiment_id: str = created.json()["id"]
        started = http.patch(f"/api/experiments/{experiment_id}", json={"status": "running"})
        assert started.status_code == 200, started.text
    return experiment_id


@pytest.fixture
def platform(isolated_env: dict[str, str], tmp_path: Path) -> Iterator[Platform]:
    env = dict(isolated_env) | {
        "CINEAMATE_ANALYTICS_CONSUMER_GROUP": unique("analytics"),
        "CINEAMATE_ANALYTICS_USER_COUNT_CACHE_SECONDS": "0",
    }
    for name in UPSTREAMS:
        env[f"CINEAMATE_{name.upper()}_URL"] = f"http://127.0.0.1:{env[port_variable(name)]}"
    provision(env)
    processes = [start_service(env, name, tmp_path) for name in SERVICES]
    try:
        processes.append(_start_gateway(env, tmp_path))
        entry = f"http://127.0.0.1:{env[port_variable('gateway')]}"
        yield Platform(env, entry, _create_experiment(entry))
    finally:
        for process in reversed(processes):
            stop_service(process)


def _traffic(experiment_id: str) -> tuple[list[tuple[str, Event]], int]:
    """Serves spread over the last quarter hour with their rewards, and the clicks among them."""
    rng = random.Random(20260301)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=16)
    variants = list(CTR)
    events: list[tuple[str, Event]] = []
    clicks = 0
    for index in range(SERVES):
        variant = variants[index % len(variants)]
        served_at = start + timedelta(seconds=15 * index)
        items = rng.sample(range(1, 9), SLATE)
        serve = ServeEvent(
            serve_id=f"serve-{index}",
            experiment_id=experiment_id,
            variant=variant,
            policy_type="random" if variant == "control" else variant,
            user_id=f"user-{index % 40}",
            items=[
                ServedItem(item_id=item, position=position, propensity=1 / 8)
                for position, item in enumerate(items)
            ],
            cohort={"user_type": rng.choice(["new", "returning"]), "device": "mobile"},
            state_version=1,
            latency_ms=rng.lognormvariate(3.2, 0.6),
            served_at=served_at,
        )
        outcomes = [1.0 if rng.random() < CTR[variant] else 0.0 for _ in items]
        clicks += int(sum(outcomes))
        reward = RewardEvent(
            serve_id=serve.serve_id,
            experiment_id=experiment_id,
            variant=variant,
            policy_type=serve.policy_type,
            items=[
                RewardedItem(
                    item_id=item.item_id, position=item.position, propensity=1 / 8, reward=outcome
                )
                for item, outcome in zip(serve.items, outcomes, strict=True)
            ],
            user_id=serve.user_id,
            cohort=serve.cohort,
            served_at=served_at,
            rewarded_at=served_at + timedelta(seconds=30),
        )
        events += [("serves", serve), ("rewards", reward)]
    return events, clicks


async def _produce(env: dict[str, str], events: list[tuple[str, Event]]) -> None:
    producer = EventProducer(env["KAFKA_BOOTSTRAP_SERVERS"], client_id="dashboard-test")
    await producer.start()
    try:
        await producer.send_many(
            OutgoingMessage.of(env[f"CINEAMATE_{topic.upper()}_TOPIC"], event)
            for topic, event in events
        )
    finally:
        await producer.stop()


def _browser(downloads: Path) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = requires_program("chromium")
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both programs are given, so Selenium never looks for (or downloads) a driver.
    return webdriver.Chrome(options=options, service=Service(requires_program("chromedriver")))


def _until(driver: WebDriver, what: str, check: Any) -> Any:
    def attempt(driver: WebDriver) -> Any:
        try:
            return check(driver)
        except StaleElementReferenceException:
            return False  # redrawn by the refresh between two reads

    return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.2).until(attempt, what)


def _cards(driver: WebDriver) -> dict[str, str]:
    return {
        card.find_element(By.TAG_NAME, "h3").text: card.find_element(By.CLASS_NAME, "value").text
        for card in driver.find_elements(By.CSS_SELECTOR, "#cards .card:not(.wide)")
    }


def _drawn(driver: WebDriver, selector: str) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, selector)


def _reward_lines(driver: WebDriver) -> list[WebElement] | None:
    lines = _drawn(driver, "#reward-chart path.line")
    return lines if len(lines) == len(CTR) else None


def _rows(driver: WebDriver, panel: str) -> int:
    return len(driver.find_elements(By.CSS_SELECTOR, f"#{panel} tbody tr"))


def _page_of_events(driver: WebDriver, page: int, rows: int) -> bool:
    label = driver.find_element(By.ID, "events-page").text
    return label.startswith(f"page {page},") and _rows(driver, "events") == rows


def _save_screenshot(driver: WebDriver, path: Path) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, max(int(height) + 40, 1000))
    time.sleep(0.5)  # the charts redraw for the new width
    driver.save_screenshot(str(path))


def _downloaded(folder: Path) -> Path | None:
    done = [path for path in folder.glob("*.csv") if path.stat().st_size > 0]
    return done[0] if done else None


def test_dashboard_shows_the_experiment_draws_its_charts_and_exports_csv(
    platform: Platform, tmp_path: Path
) -> None:
    events, clicks = _traffic(platform.experiment_id)
    asyncio.run(_produce(platform.env, events))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = _browser(downloads)
    try:
        driver.get(f"{platform.entry}/")
        _until(driver, "the token form", lambda d: d.find_element(By.ID, "token").is_displayed())
        assert not driver.find_element(By.ID, "main").is_displayed()
        driver.get_log("browser")  # drained: the 401 that asked for the token is expected

        token = TEST_TOKENS["CINEAMATE_READ_TOKEN"]
        driver.get(f"{platform.entry}/?token={token}")

        expected = {"Serves": str(SERVES), "Rewards": str(SERVES * SLATE)}
        _until(driver, "every serve and reward", lambda d: _cards(d).items() >= expected.items())
        assert "token" not in driver.current_url
        assert not driver.find_element(By.ID, "token-form").is_displayed()
        assert f"experiment={platform.experiment_id}" in driver.current_url
        lines = _until(driver, "a cumulative reward line per policy", _reward_lines)
        assert {line.get_attribute("data-series") for line in lines} == set(CTR)
        assert all(line.get_attribute("d").count("L") >= 10 for line in lines)
        driver.find_element(By.CSS_SELECTOR, "[data-measure=cumulative_regret]").click()
        assert driver.find_element(By.ID, "reward-title").text == "Cumulative regret"
        assert _until(driver, "a cumulative regret line per policy", _reward_lines)
        driver.find_element(By.CSS_SELECTOR, "[data-measure=cumulative_reward]").click()
        _until(driver, "latency bars", lambda d: _drawn(d, "#latency-chart rect.bar"))
        _until(driver, "the SLA line", lambda d: _drawn(d, "#latency-chart line.marker"))
        _until(driver, "the arm table", lambda d: _rows(d, "arms") >= len(CTR))
        _until(driver, "the cohort table", lambda d: _rows(d, "cohorts") == 2)
        fairness = driver.find_element(By.CSS_SELECTOR, "#cohorts tfoot tr").text
        assert fairness.startswith("Fairness (CV of CTR)")
        # Either the service's checks or the state saying it has none yet; never an error.
        guardrails = driver.find_element(By.ID, "guardrails")
        assert guardrails.find_elements(By.CSS_SELECTOR, ".empty, table")
        assert not guardrails.find_elements(By.CSS_SELECTOR, ".error")
        variants = driver.find_element(By.ID, "variants").text
        assert all(name in variants for name in CTR)
        assert f"{clicks} clicks" in driver.find_element(By.ID, "cards").text

        _until(driver, "the first page", lambda d: _page_of_events(d, 1, EVENTS_PER_PAGE))
        driver.find_element(By.ID, "events-next").click()
        _until(driver, "the second page", lambda d: _page_of_events(d, 2, EVENTS_PER_PAGE))
        driver.find_element(By.ID, "events-next").click()
        _until(driver, "the last page", lambda d: _page_of_events(d, 3, SERVES % EVENTS_PER_PAGE))
        assert not driver.find_element(By.ID, "events-next").is_enabled()
        driver.find_element(By.ID, "events-first").click()
        _until(driver, "the first page again", lambda d: _page_of_events(d, 1, EVENTS_PER_PAGE))

        driver.find_element(By.ID, "export").click()
        exported = _until(driver, "the CSV download", lambda d: _downloaded(downloads))
        assert exported.name == f"{platform.experiment_id}-serves.csv"
        with exported.open(newline="") as file:
            rows = list(csv.reader(file))
        assert rows[0] == event_columns("serve")
        assert len(rows) == 1 + SERVES
        assert {row[1] for row in rows[1:]} == set(CTR)

        errors = [
            entry["message"]
            for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and "/guardrails" not in entry["message"]
        ]
        assert errors == []

        screenshot = tmp_path / "dashboard.png"
        _save_screenshot(driver, screenshot)
        ARTIFACT.parent.mkdir(exist_ok=True)
        shutil.copyfile(screenshot, ARTIFACT)
    finally:
        driver.quit()
