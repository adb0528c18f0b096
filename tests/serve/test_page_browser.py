"""The page at ``/`` in a real browser: headless Chromium (Selenium with the system's chromedriver)
against real ``memrec serve`` processes, on small models trained here on MovieLens-100K.

Without Chromium these tests fail (``tests/run.sh`` installs ``chromium`` and ``chromium-driver``
from Debian); ``MEMREC_SKIP_BROWSER=1`` skips them on purpose. Screenshots go to each test's
folder; ``MEMREC_DOCS_SCREENSHOT=1`` also writes the one of docs/page.md to ``docs/page.png``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from memrec.serve.testing import ServiceProcess

from .conftest import TOKEN

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "page.png"
SMALL = ["--train.train_windows=last", "--model_config.hidden_size=32", "--model_config.num_layers=1", "--model_config.inner_size=64"]
RUNS = {"sasrec": ["--train.epochs=2", *SMALL],
        "ur4rec-moe": ["--train.epochs=1", *SMALL, "--model_config.modalities=[id]", "--model_config.memory_dim=32",
                       "--model_config.interaction_threshold=3"]}


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium, 1280 x 900."""
    if os.environ.get("MEMREC_SKIP_BROWSER") == "1":
        pytest.skip("MEMREC_SKIP_BROWSER=1: the browser tests are skipped on purpose")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("the browser tests need selenium: pip install -e '.[dev]'", pytrace=False)
    chromium = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("the browser tests need Chromium and its driver: apt-get install chromium chromium-driver (tests/run.sh "
                    "installs them), or set MEMREC_SKIP_BROWSER=1 to skip them", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900", "--lang=en-US"):
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    yield chrome
    chrome.quit()


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """``memrec train`` on ML-100K, once per model asked for: model -> checkpoint path."""
    runs = {}

    def checkpoint(model: str) -> Path:
        if model not in runs:
            folder = tmp_path_factory.mktemp(model)
            done = subprocess.run([sys.executable, "-m", "memrec.cli", "train", "--model", model, "--dataset", "ml-100k",
                                   "--output", str(folder / "run"), *RUNS[model]], capture_output=True, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            runs[model] = folder / "run" / "checkpoint.pt"
        return runs[model]

    return checkpoint


class Page:
    """What a test reads and does on the page, through the browser."""

    def __init__(self, driver):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver, self.by, self.wait = driver, By, WebDriverWait(driver, 60, poll_frequency=0.05)

    def find(self, css: str):
        return self.driver.find_element(self.by.CSS_SELECTOR, css)

    def all(self, css: str):
        return self.driver.find_elements(self.by.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.find(css).text

    def until(self, check, why: str):
        return self.wait.until(lambda _: check(), message=f"{why}; status line: {self.text('#status')!r}")

    def recommendations(self) -> list[str]:
        return [b.get_attribute("data-item") for b in self.all("#recs button")]

    def marked_new(self) -> set[str]:
        return {li.find_element(self.by.CSS_SELECTOR, "button").get_attribute("data-item") for li in self.all("#recs li.entered")}

    def facts(self) -> dict[str, str]:
        names, values = self.all("#memory dt"), self.all("#memory dd")
        return {n.text: v.text for n, v in zip(names, values)}

    def send(self, button, events_before: int, keyboard: bool = False) -> str:
        """Send a recommended item as an event (click, or Enter on it) and wait for the history to show it."""
        item = button.get_attribute("data-item")
        if keyboard:
            from selenium.webdriver.common.keys import Keys

            button.send_keys(Keys.ENTER)
        else:
            button.click()
        self.until(lambda: self.text("#history-heading").startswith(f"History ({events_before + 1} event"), f"sending {item}")
        return item

    def screenshot(self, path: Path, width: int = 1280) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).move_to_element(self.find("h1")).perform()  # no item under the pointer
        self.driver.set_window_size(width, 900)
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(width, height + 140)  # the whole page, window frame included
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(1280, 900)


def movie_titles() -> dict[str, str]:
    lines = (Path(os.environ.get("MEMREC_DATA_DIR", "../shared/data")) / "ml-100k" / "ml-100k.item").read_text().splitlines()[1:]
    return {fields[0]: fields[1] for fields in (line.split("\t") for line in lines)}


def check_marks(page: Page, before: list[str], clicked: str) -> None:
    """Items that entered the top-k are marked new; those that left, the clicked one aside, are listed."""
    after = page.recommendations()
    assert clicked not in after and page.marked_new() == set(after) - set(before) != set()
    left = [item for item in before if item not in after and item != clicked]
    shown = [li.text for li in page.all("#left-list li")]
    assert len(shown) == len(left) and page.find("#left").is_displayed() == bool(left)


def test_a_known_user_clicks_a_recommendation_and_the_ranking_moves(browser, trained, tmp_path):
    """SASRec (no per-user memory) behind a token, the training users imported: history and top-k only."""
    page, titles = Page(browser), movie_titles()
    with ServiceProcess(trained("sasrec"), tmp_path / "state.db", token=TOKEN, extra=["--import-training-users"]) as service:
        api = httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        browser.get(service.url + "/")
        page.until(lambda: page.find("#token-form").is_displayed(), "the page asks for the token")
        page.find("#token").send_keys(TOKEN)
        page.find("#token-form button").click()
        page.until(lambda: page.all("#sample-list button"), "sample users from the store")
        assert page.text("#model").startswith("Model: sasrec · 1,682 items · no per-user memory")
        samples = page.all("#sample-list button")
        user = samples[0].text
        samples[0].click()
        page.until(lambda: page.text("#user-heading") == f"User {user}" and page.all("#recs button"), f"user {user}")

        logged = api.get(f"/users/{user}", params={"limit": 1000}).json()
        count = logged["history_length"]
        assert page.text("#history-heading") == f"History ({count} events)" and count > 0
        newest = [li.find_element(page.by.CSS_SELECTOR, ".title").text for li in page.all("#history li")]
        assert all(shown.startswith(titles[e["item"]]) for shown, e in zip(newest[:3], logged["history"][::-1]))  # titles, newest first
        assert page.find("#memory-panel").is_displayed() is False and page.find("#reset").is_displayed() is False

        before = page.recommendations()
        assert len(before) == 10 and not set(before) & {e["item"] for e in logged["history"]}
        clicked = page.send(page.all("#recs button")[0], count)
        assert page.recommendations() != before
        check_marks(page, before, clicked)
        assert page.find("#history li .title").text.startswith(titles[clicked])
        assert api.get(f"/users/{user}").json()["history"][-1]["item"] == clicked  # recorded through POST /events
        page.screenshot(tmp_path / "sasrec.png")
    assert (tmp_path / "sasrec.png").stat().st_size > 20_000


def test_a_new_user_becomes_personal_as_they_click_and_a_reset_starts_the_memory_over(browser, trained, tmp_path):
    """UR4Rec-MoE (a memory updated every 3 events), no token: a new user, four events (one by keyboard), a reset."""
    page, titles = Page(browser), movie_titles()
    with ServiceProcess(trained("ur4rec-moe"), tmp_path / "state.db") as service:
        browser.get(service.url + "/")
        page.until(lambda: page.text("#model").startswith("Model: ur4rec-moe"), "the model line")
        assert "update trigger: every 3 interactions" in page.text("#model")
        assert browser.execute_script("return [...document.querySelectorAll('input')]"
                                      ".every(i => document.querySelector(`label[for='${i.id}']`))"), "an input without a label"
        page.find("#new-user").click()
        page.until(lambda: "(new: nothing known yet)" in page.text("#user-heading") and page.all("#recs button"), "a new user")
        user = page.find("#user").get_attribute("value")
        assert page.text("#history-heading") == "History (0 events)" and page.all("#history li") == []
        assert page.facts()["Since the last update"].startswith("0 of 3") and page.facts()["Updates"] == "0"
        cold, initial = page.recommendations(), page.facts()["Memory norm"]

        for n in range(3):
            before = page.recommendations()
            clicked = page.send(page.all("#recs button")[n], n, keyboard=n == 1)
            check_marks(page, before, clicked)
            assert page.find("#history li .title").text.startswith(titles[clicked])
        assert page.text("#memory-event") == "The trigger fired on this event: the memory was updated."
        assert page.facts()["Updates"] == "1" and page.facts()["Since the last update"].startswith("0 of 3")
        assert "(new" not in page.text("#user-heading") and page.recommendations() != cold  # personal now
        assert [li.text.split("\n")[0] for li in page.all("#routing-list li")] == ["user"]
        page.screenshot(tmp_path / "ur4rec-moe.png")
        if os.environ.get("MEMREC_DOCS_SCREENSHOT") == "1":
            shutil.copyfile(tmp_path / "ur4rec-moe.png", DOCS_SCREENSHOT)

        page.send(page.all("#recs button")[0], 3)
        assert page.facts()["Since the last update"].startswith("1 of 3") and page.facts()["Memory norm"] != initial
        page.find("#reset").click()
        page.until(lambda: page.text("#memory-event").startswith("The memory starts over"), "the reset")
        assert page.facts()["Since the last update"].startswith("0 of 3") and page.facts()["Memory norm"] == initial
        assert page.text("#history-heading") == "History (4 events)"  # the log is kept
        stored = httpx.get(f"{service.url}/users/{user}", timeout=30).json()
        assert stored["history_length"] == 4 and stored["memory"]["pending_items"] == 0 and stored["memory"]["history_size"] == 0

        browser.set_window_size(390, 844)  # a phone: one column, nothing wider than the screen
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(tmp_path / "phone.png", width=390)
