"""The dashboard in headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium): log in, filter, open an instance and its timeline, raise an event and watch the
instance complete, terminate another, look at the fleet. Any console error fails a test.
The screenshots in docs/images/ come from here: ``PERDURE_SCREENSHOTS=docs`` refreshes them."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import perdure
from tests.web.conftest import TOKEN, Served, served_app, wait_until
from tests.web.shop import app as shop
from tests.web.shop import declined, nightly, order_saga

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
#: Where the screenshots go: docs/images/ when PERDURE_SCREENSHOTS=docs (to refresh the
#: ones the docs show), else a temporary folder (a test run leaves the repository as it is).
IMAGES = (
    DOCS_IMAGES if os.environ.get("PERDURE_SCREENSHOTS") == "docs" else Path(tempfile.mkdtemp(prefix="perdure-shots-"))
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="the browser tests need Debian's chromium and chromium-driver (/usr/bin/chromium, "
    "/usr/bin/chromedriver); .ci/run installs them with apt",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    """Headless Chromium with a fresh profile, a 1280×800 viewport and its console log."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument("--window-size=1280,800")
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    viewport(driver, 1280, 800)
    try:
        yield driver
    finally:
        driver.quit()


def viewport(driver, width: int, height: int) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def screenshot(driver, name: str, *, full_page: bool = False) -> None:
    """Save a PNG of the viewport (or the whole page) into :data:`IMAGES`."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    params: dict = {"format": "png"}
    if full_page:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1})
    data = driver.execute_cdp_cmd("Page.captureScreenshot", params)["data"]
    (IMAGES / name).write_bytes(base64.b64decode(data))


def text_of(driver, css: str) -> str:
    """The visible text of the first element matching ``css`` (read in one script: the live
    regions replace their elements every few seconds)."""
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : null", css)


def texts(driver, css: str) -> list[str]:
    """The text of every element matching ``css``, read at one instant."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), e => e.textContent.trim())", css
    )


def wait_for(driver, predicate, timeout: float = 30.0, what: str = "the page") -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: predicate(d), message=f"waiting for {what}")


@pytest.fixture
def shop_served(tmp_path: Path) -> Iterator[Served]:
    """A store with orders in every state, a worker running them, and the app served."""
    store = perdure.open_store(f"sqlite:///{tmp_path / 'shop.db'}")
    client = perdure.Client(store)
    with perdure.Worker(shop, store, poll_interval=0.02, heartbeat_interval=0.5):
        for n in range(1, 6):
            items = ["book", "lamp", "mug"][: 1 + n % 3]
            client.start(order_saga, {"id": n, "total": 20 * n, "items": items}, instance_id=f"order-{n}")
        client.start(declined, None, instance_id="order-99")
        client.start(nightly, None, instance_id="nightly-2026-12-03")
        for n in range(1, 6):
            wait_until(lambda n=n: client.get(f"order-{n}").waiting_on.events, what=f"order-{n} to await approval")
        client.raise_event("order-1", "Approved", {"by": "ops"})
        client.raise_event("order-2", "Approved", {"by": "ops"})
        client.suspend("order-5", "address check")
        client.wait("order-1", timeout=30)
        client.wait("order-2", timeout=30)
        wait_until(lambda: client.get("order-99").is_terminal, what="order-99 to fail")
        with served_app(store) as served:
            yield served
    store.close()


def log_in(driver, base: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base + "/instances")
    assert "/login" in driver.current_url
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, ".login button[type=submit]").click()
    wait_for(driver, lambda d: d.current_url.endswith("/instances"), what="the instance list")


def test_an_operator_finds_an_order_approves_it_and_terminates_another(browser, shop_served: Served) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver, base = browser, shop_served.url
    log_in(driver, base)
    assert text_of(driver, ".count-running .count-n") == "3"  # order-3, order-4, nightly
    assert text_of(driver, ".count-completed .count-n") == "4"  # two orders and their shipping children
    assert text_of(driver, ".count-failed .count-n") == "1"
    assert len(texts(driver, "#instances tbody tr")) == 9
    screenshot(driver, "web-instances.png")

    # filter: running orders
    Select(driver.find_element(By.ID, "f-status")).select_by_value("RUNNING")
    driver.find_element(By.ID, "f-prefix").send_keys("order-")
    driver.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    wait_for(driver, lambda d: "prefix=order-" in d.current_url, what="the filtered list")
    assert texts(driver, "#instances tbody td.id-cell a") == ["order-4", "order-3"]
    assert set(texts(driver, "#instances tbody .status")) == {"running"}

    # open order-3: what it waits on, its timeline, its diagnosis
    driver.find_element(By.LINK_TEXT, "order-3").click()
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline svg"), what="the timeline")
    assert "Approved" in text_of(driver, "#waiting-on") and " min (20" in text_of(driver, "#waiting-on")
    labels = texts(driver, "#timeline .tl-label")
    assert "charge #1" in labels and "retry charge" in labels and "event Approved" in labels
    assert len(texts(driver, "#timeline .tl-bar.tl-failed")) == 1
    assert texts(driver, "#timeline .tl-bar.tl-open.tl-waiting")  # the open wait, drawn to now
    assert len(texts(driver, "#timeline .tl-bar")) == 5  # reserve, charge #1, its retry delay, charge #2, the wait
    assert "waiting for event" in text_of(driver, "#diagnosis")
    assert "Remedy" in text_of(driver, "#diagnosis")
    screenshot(driver, "web-instance.png", full_page=True)

    # raise the approval and watch the page follow the instance to the end
    driver.find_element(By.CSS_SELECTOR, "#action-raise summary").click()
    assert driver.find_element(By.ID, "event-name").get_attribute("value") == "Approved"
    driver.find_element(By.ID, "event-data").send_keys('{"by": "browser"}')
    driver.find_element(By.CSS_SELECTOR, "#action-raise button[type=submit]").click()
    wait_for(driver, lambda d: "Event 'Approved' raised." in d.page_source, what="the confirmation")
    wait_for(driver, lambda d: text_of(d, ".instance-head .status") == "COMPLETED", what="order-3 to complete")
    assert '"by": "browser"' in text_of(driver, "main")
    assert not driver.find_elements(By.ID, "action-terminate")  # nothing left to do to it
    assert texts(driver, "#timeline .tl-open") == []

    # terminate order-4, with a reason
    driver.get(base + "/instances/order-4")
    driver.find_element(By.CSS_SELECTOR, "#action-terminate summary").click()
    assert "cannot be undone" in text_of(driver, "#action-terminate .confirm-text")
    driver.find_element(By.ID, "reason-terminate").send_keys("duplicate order")
    driver.find_element(By.CSS_SELECTOR, "#action-terminate button[type=submit]").click()
    wait_for(driver, lambda d: text_of(d, ".instance-head .status") == "TERMINATED", what="order-4 to terminate")
    assert shop_served.client.get("order-4", history=True).history[-1].reason == "duplicate order"

    # the fleet
    driver.get(base + "/fleet")
    wait_for(driver, lambda d: d.find_elements(By.ID, "workers"), what="the fleet page")
    assert "order_saga" in text_of(driver, "#queues") or "queues are empty" in text_of(driver, "main")
    assert len(texts(driver, "#workers tbody tr")) == 1
    assert "external event receipt" in text_of(driver, "#signals")
    screenshot(driver, "web-fleet.png")
    time.sleep(5.5)  # one live refresh of the fleet page
    assert driver.find_elements(By.ID, "workers")

    assert console_errors(driver) == []


def test_the_list_is_usable_in_a_narrow_window(browser, shop_served: Served) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    log_in(driver, shop_served.url)
    viewport(driver, 400, 800)
    driver.get(shop_served.url + "/instances")
    overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0  # the page itself never scrolls sideways; wide tables scroll in their card
    assert driver.find_element(By.ID, "f-prefix").is_displayed()
    driver.find_element(By.LINK_TEXT, "order-1").click()
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline svg"), what="the instance page")
    overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    assert console_errors(driver) == []


def test_chromium_is_there_when_ci_runs() -> None:
    assert shutil.which("chromium") == str(CHROMIUM)
