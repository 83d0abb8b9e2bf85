"""The web dashboard in headless Chromium (Debian `chromium` and its
`chromedriver`, driven with Selenium): sign in with the keyboard (password,
later the API key), see the
agents, approve a waiting payment with a click, watch a payment made over
REST appear live, export CSV, and fit a phone's width. Screenshots go to
the artifacts directory.

usage: dashboard_test.py <gateway url> <scenario.json> <artifacts dir>
"""

import json
import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


def rest(url, key, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"x-api-key": key, "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def main():
    url, path, artifacts = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(path) as f:
        s = json.load(f)
    downloads = os.path.join(artifacts, "downloads")
    os.makedirs(downloads, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"]:
        options.add_argument(a)
    options.add_experimental_option("prefs", {"download.default_directory": downloads,
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    wait = WebDriverWait(driver, 30)
    shot = lambda name: driver.save_screenshot(os.path.join(artifacts, f"dashboard-{name}.png"))
    try:
        driver.get(url + "/dashboard")
        # Sign in with the keyboard: labelled fields, Tab between them, Enter submits.
        for field, label in [("email", "Email"), ("password", "Password"), ("api-key", "Your API key")]:
            text = driver.find_element(By.CSS_SELECTOR, f"label[for={field}]").text
            check(text.startswith(label), f"{field} labelled: {text}")
        email = driver.find_element(By.ID, "email")
        email.send_keys(s["email"] + Keys.TAB)
        driver.switch_to.active_element.send_keys(s["password"] + Keys.ENTER)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#agents tbody tr")) == 2)
        names = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#agents tbody tr td:first-child")]
        check(sorted(names) == ["Payee", "Payer"], f"the agents: {names}")
        shot("signed-in")

        # The waiting payment, approved with a click.
        waiting = s["waiting"]
        button = wait.until(ec.element_to_be_clickable(
            (By.CSS_SELECTOR, f'#approvals tr[data-payment="{waiting}"] button')))
        check(button.text == "Approve", f"approve button first: {button.text}")
        button.click()
        wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, f'#approvals tr[data-payment="{waiting}"]'))
        payment = rest(url, s["key"], "GET", f"/payments/{waiting}")
        check(payment["approvalstatus"] == "Approved", f"approved over the dashboard: {payment}")
        shot("approved")

        # A payment made over REST appears without a reload.
        made = rest(url, s["key"], "POST", "/payments/register", {
            "senderagentid": s["payer"], "receiveragentid": s["payee"], "name": "live one",
            "type": "INTERNAL", "paymentdetails": {"amount": 1, "currency": "USDC"}})
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#payments tr[data-payment="{made["id"]}"]'))
        check(driver.find_element(By.ID, "live").text == "Live", "the live indicator")
        shot("live")

        # Export CSV.
        driver.find_element(By.ID, "export-csv").click()
        target = os.path.join(downloads, "payments.csv")
        deadline = time.time() + 30
        while not os.path.exists(target) and time.time() < deadline:
            time.sleep(0.2)
        check(os.path.exists(target), "the CSV downloaded")
        with open(target) as f:
            lines = f.read().strip().splitlines()
        check(len(lines) >= 3 and "live one" in "\n".join(lines), f"the CSV holds the payments: {lines[:3]}")

        # Signed out, and in again with the API key.
        driver.find_element(By.ID, "sign-out").click()
        wait.until(lambda d: d.find_element(By.ID, "api-key").is_displayed())
        driver.find_element(By.ID, "api-key").send_keys(s["key"] + Keys.ENTER)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#agents tbody tr")) == 2)

        # A phone's width: nothing wider than the screen.
        driver.set_window_size(390, 844)
        time.sleep(0.3)
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        check(overflow <= 1, f"fits a phone (overflow {overflow}px)")
        shot("phone")
    finally:
        driver.quit()
    print("dashboard: ok")


if __name__ == "__main__":
    main()
