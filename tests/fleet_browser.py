"""Drive the collector's fleet page in Debian's chromium (run by test_collector_fleet.py in its own process).

Usage: fleet_browser.py URL PASSWORD BROWSER DRIVER OUTDIR.  Selenium runs in a
child process so that its imports and threads stay out of the pytest process
(the in-process threaded SQLite tests run after it).
"""

from __future__ import annotations

import base64
import os
import shutil
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def main(url: str, password: str, browser: str, driver_path: str, outdir: str) -> None:
    out = Path(outdir)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", f"--user-data-dir={out / 'chromium'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        credentials = base64.b64encode(f"ops:{password}".encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {credentials}"}})
        driver.get(url + "/")
        assert driver.title == "om collector", driver.title
        first = driver.find_elements(By.CSS_SELECTOR, "#tasks tr")[1]
        assert first.get_attribute("class") == "failing", first.get_attribute("class")
        cells = [td.text for td in first.find_elements(By.TAG_NAME, "td")]
        assert cells[:3] == ["web", "n1", "task#0"] and cells[4:] == ["failed", "3"], cells
        assert "1 failing" in driver.find_element(By.ID, "counts").text
        shot = out / "fleet.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 1000
        if os.environ.get("OM_TEST_ARTIFACTS"):
            target = Path(os.environ["OM_TEST_ARTIFACTS"])
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, target / "collector-fleet.png")
        first.find_element(By.LINK_TEXT, "web").click()
        assert driver.title.startswith("web"), driver.title
        assert "failed" in driver.find_element(By.ID, "runs").text
        driver.save_screenshot(str(out / "service.png"))
    finally:
        driver.quit()


if __name__ == "__main__":
    main(*sys.argv[1:6])
