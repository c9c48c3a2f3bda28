"""``autoshoot review``: the real HTTP server on a real RUN folder, and a real browser.

The browser test drives Debian's Chromium through chromedriver (selenium); ``.ci/run`` installs
both. Without them it skips here, but fails under CI (CI=true), where they must be present.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import fake_stages, write_catalog, write_photo

from autoshoot.config import Config
from autoshoot.report.review.decisions import read_decisions
from autoshoot.report.review.server import allowed_clients, serve
from autoshoot.run.folder import run_lock
from autoshoot.run.recipe import run_catalog

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture()
def run(tmp_path: Path) -> Path:
    rows = []
    for i in range(4):
        write_photo(tmp_path / "img" / f"p{i}.png", seed=i)
        rows.append({"sku": f"SKU-{i}", "image": f"img/p{i}.png"})
    catalog = write_catalog(tmp_path, rows)
    out = tmp_path / "runs" / "night1"
    run_catalog(catalog, out, Config(), quiet=True, stages=fake_stages([]))
    return out


def request(server, method: str, path: str, body=None, source: str = "", headers=None):  # type: ignore[no-untyped-def]
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10, source_address=(source, 0) if source else None)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, path, body=data, headers={**hdrs, **(headers or {})})
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    try:
        return resp.status, json.loads(payload)
    except ValueError:
        return resp.status, payload.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------
# the server over HTTP


def test_decisions_are_checked_saved_and_survive_a_restart(run: Path) -> None:
    server = serve(run, port=0, reviewer="ana")
    try:
        status, page = request(server, "GET", "/")
        assert status == 200 and "/_review/decide" in page and "data-sku='SKU-1'" in page
        status, state = request(server, "GET", "/_review/state")
        assert state["skus"]["SKU-0"]["best_index"] == 3 and state["reviewer"] == "ana"
        status, image = request(server, "GET", "/SKU-0/composite/c1.png")
        assert status == 200

        ok = request(
            server, "POST", "/_review/decide", {"sku": "SKU-0", "decision": "approved", "candidate": 1}
        )
        assert ok[0] == 200 and ok[1]["decision"]["decision"] == "picked"  # not the best: a pick
        # bad input, each refused with a message that names it
        status, body = request(
            server, "POST", "/_review/decide", {"sku": "NOPE", "decision": "approved", "candidate": 1}
        )
        assert status == 404 and body["error"].startswith(
            "SKU 'NOPE' is not in this run (night1/results.csv)"
        )
        status, body = request(
            server, "POST", "/_review/decide", {"sku": "SKU-1", "decision": "picked", "candidate": 7}
        )
        assert (status, body["error"]) == (400, "SKU 'SKU-1' has no candidate 7 (it has: 0, 1, 2, 3)")
        status, body = request(server, "POST", "/_review/decide", {"sku": "SKU-1", "decision": "rejected"})
        assert status == 400 and "needs a reason" in body["error"]
        status, body = request(
            server, "POST", "/_review/decide", b"sku=SKU-1", headers={"Content-Type": "text/plain"}
        )
        assert status == 415
        # never a file outside RUN, nor its dot-files
        assert request(server, "GET", "/../../img/p0.png")[0] == 404
        assert request(server, "GET", "/%2e%2e/img/p0.png")[0] == 404
        assert request(server, "GET", "/.lock")[0] == 404
        # a page from another site that resolves to us (DNS rebinding) is refused
        assert request(server, "GET", "/_review/state", headers={"Host": "evil.example:80"})[0] == 403
        # a run starts writing RUN: decisions wait for it
        with run_lock(run):
            status, body = request(
                server,
                "POST",
                "/_review/decide",
                {"sku": "SKU-1", "decision": "rejected", "reason": "bad hand"},
            )
            assert status == 409 and "a run is writing night1" in body["error"]
    finally:
        server.shutdown()
        server.server_close()

    # a new server (a restart) shows the saved decision
    again = serve(run, port=0)
    try:
        status, state = request(again, "GET", "/_review/state")
        assert state["skus"]["SKU-0"]["decision"]["candidate"] == 1
        assert state["skus"]["SKU-0"]["decision"]["reviewer"] == "ana"
        assert state["skus"]["SKU-1"]["decision"] is None
    finally:
        again.shutdown()
        again.server_close()


def test_a_request_from_another_address_is_refused(run: Path) -> None:
    server = serve(run, host="127.0.0.2", port=0)  # bound to one loopback address ...
    try:
        assert request(server, "GET", "/_review/state", source="127.0.0.2")[0] == 200
        status, body = request(server, "GET", "/_review/state", source="127.0.0.1")  # ... asked from another
        assert status == 403 and body["error"].startswith("requests from 127.0.0.1 are not served")
        status, _ = request(
            server,
            "POST",
            "/_review/decide",
            {"sku": "SKU-0", "decision": "approved", "candidate": 3},
            source="127.0.0.1",
        )
        assert status == 403 and not (run / "decisions.csv").exists()
    finally:
        server.shutdown()
        server.server_close()
    allowed = serve(run, host="127.0.0.2", port=0, allow=["127.0.0.1"])
    try:
        assert request(allowed, "GET", "/_review/state", source="127.0.0.1")[0] == 200
    finally:
        allowed.shutdown()
        allowed.server_close()


def test_which_clients_a_bind_serves() -> None:
    assert allowed_clients("127.0.0.1", []) == {"127.0.0.1", "::1"}
    assert allowed_clients("192.168.1.20", ["192.168.1.7"]) == {"192.168.1.20", "192.168.1.7"}
    # a wildcard bind serves no other machine unless it is named
    assert allowed_clients("0.0.0.0", []) == {"127.0.0.1", "::1"}
    assert allowed_clients("::", ["10.0.0.5"]) == {"127.0.0.1", "::1", "10.0.0.5"}
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        allowed_clients("127.0.0.1", ["my-laptop"])


def test_the_command_serves_the_run_until_stopped(run: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoshoot", "review", str(run), "--port", "0", "--reviewer", "cy"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith(f"Reviewing {run} at http://127.0.0.1:"), line + proc.stderr.read()  # type: ignore[union-attr]
        port = int(line.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(
            "POST",
            "/_review/decide",
            json.dumps({"sku": "SKU-2", "decision": "rejected", "reason": "bad scene"}),
            {"Content-Type": "application/json"},
        )
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert proc.returncode == 0
    decision = read_decisions(run)["SKU-2"]
    assert (decision.decision, decision.reason, decision.reviewer) == ("rejected", "bad scene", "cy")


def test_the_command_refuses_a_run_folder_a_run_is_writing(run: Path) -> None:
    with run_lock(run):
        proc = subprocess.run(
            [sys.executable, "-m", "autoshoot", "review", str(run), "--port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2
    assert (
        f"Error: {run} is being written by an autoshoot run (pid {os.getpid()}); wait for it" in proc.stderr
    )


# ---------------------------------------------------------------------------------------
# the page in a real browser


def chrome():  # type: ignore[no-untyped-def]
    missing = [name for name, found in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not found]
    try:
        from selenium import webdriver
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        message = (
            f"the browser test needs {', '.join(missing)}: `make install` brings selenium, "
            "`apt-get install chromium chromium-driver` the browser (.ci/run does both)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium look for a driver online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def test_a_reviewer_approves_picks_and_rejects_in_the_browser(run: Path) -> None:
    driver = chrome()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server = serve(run, port=0, reviewer="ana")
    try:
        driver.get(server.url)
        wait = WebDriverWait(driver, 10)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-review") == "ready")

        def block(sku: str):  # type: ignore[no-untyped-def]
            return driver.find_element(By.CSS_SELECTOR, f".sku[data-sku='{sku}']")

        def decided(sku: str, text: str) -> None:
            wait.until(lambda d: text in block(sku).find_element(By.CLASS_NAME, "rv-state").text)

        name = driver.find_element(By.ID, "rv-reviewer")
        name.clear()
        name.send_keys("bo")
        # 1. click: approve the best pick
        block("SKU-0").find_element(By.CLASS_NAME, "rv-approve").click()
        decided("SKU-0", "approved candidate 3")
        # 2. click: pick the second candidate shown (the best comes first: candidate 0)
        block("SKU-1").find_elements(By.CLASS_NAME, "rv-pick")[1].click()
        decided("SKU-1", "picked candidate 0")
        # 3. click: reject with a reason
        block("SKU-2").find_element(By.CLASS_NAME, "rv-reject").click()
        block("SKU-2").find_element(By.CSS_SELECTOR, "[data-reason='bad hand']").click()
        decided("SKU-2", "rejected: bad hand")
        # 4. keys: the page moved on to SKU-3 by itself; r 3 rejects (bad scene), then k j 3 picks
        body = driver.find_element(By.TAG_NAME, "body")
        assert "rv-current" in block("SKU-3").get_attribute("class")
        body.send_keys("r3")
        decided("SKU-3", "rejected: bad scene")
        body.send_keys("kj3")
        decided("SKU-3", "picked candidate 1")
        assert "4 of 4 decided" in driver.find_element(By.ID, "rv-count").text
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()

    with open(run / "decisions.csv", newline="") as fh:
        rows = {r["sku"]: r for r in csv.DictReader(fh)}
    got = {sku: (r["decision"], r["candidate"], r["reason"], r["reviewer"]) for sku, r in rows.items()}
    assert got == {
        "SKU-0": ("approved", "3", "", "bo"),
        "SKU-1": ("picked", "0", "", "bo"),
        "SKU-2": ("rejected", "", "bad hand", "bo"),
        "SKU-3": ("picked", "1", "", "bo"),  # the last decision for a SKU wins
    }
    assert all(r["photo_sha256"] and r["decided_at"] for r in rows.values())
    assert read_decisions(run)["SKU-1"].candidate == 0
