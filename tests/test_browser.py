"""A real browser: JupyterLab on 127.0.0.1, Debian's chromium driven by Playwright, notebook 05 run, the λ
slider moved (the predicted-latency readout and the architecture drawing must change), then the set and penalty
toggles clicked through student/teacher x decoupled/coarse: the whole panel (readout, drawing, figure) must update
within 1 s of each click. Screenshots go to the test's output folder. Skips, printing why, only where chromium or
Playwright is missing."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import REPO

NOTEBOOK = "notebooks/05_latency_tuning.ipynb"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server of its own (config and runtime folders in tmp), stopped by its PID."""
    chromium = shutil.which("chromium")
    if chromium is None:
        print("skipped: Debian's chromium is not installed (scripts/setup_browser.sh installs it as root)")
        pytest.skip("chromium is not installed")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    port, token = _free_port(), "fasterseg-test"
    cfg = tmp_path / "jupyter-config"
    settings = cfg / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                           "checkForUpdates": False}))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(cfg), JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(cfg / "lab" / "user-settings"), FASTERSEG_PROFILE="tiny")
    proc = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
                             f"--port={port}", f"--ServerApp.token={token}", "--ServerApp.password=",
                             f"--ServerApp.root_dir={REPO}"], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "lab.log", "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"JupyterLab did not start: {(tmp_path / 'lab.log').read_text()[-2000:]}")
    yield url, token, chromium
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_latency_slider_in_a_real_browser(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    url, token, chromium = lab
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}&reset")
        page.wait_for_selector(".jp-Notebook", timeout=60000)
        try:  # a "Select Kernel" dialog may ask first: accept the proposed Python 3 kernel
            page.locator(".jp-Dialog .jp-mod-accept").click(timeout=10000)
        except Exception:
            pass
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60000)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator("li[data-command='runmenu:run-all']").click()
        slider = page.locator(".widget-slider").first
        try:
            slider.wait_for(timeout=120000)
        except Exception:
            page.screenshot(path=str(tmp_path / "no-slider.png"))
            print(f"no slider after run-all; screenshot {tmp_path / 'no-slider.png'}")
            raise
        readout = page.locator(".widget-html-content", has_text="predicted by").first  # the panel's readout
        readout.wait_for(timeout=60000)
        # the readout's numbers arrive after its frame; a busy machine renders them late
        page.wait_for_function(READOUT + ".innerText.includes('ms (')", timeout=120000)
        readout.scroll_into_view_if_needed()
        before_text = page.evaluate(READOUT + ".innerText", None)
        before_img = page.locator(".jupyter-widgets img, .widget-image").first.get_attribute("src")
        page.screenshot(path=str(tmp_path / "before.png"))
        handle = slider.locator(".noUi-handle").first
        handle.focus()
        for _ in range(25):
            page.keyboard.press("ArrowRight")
        page.wait_for_function(READOUT + ".innerText !== before", arg=before_text, timeout=60000)
        page.wait_for_function(READOUT + ".innerText.includes('ms (')", timeout=120000)
        page.wait_for_function("(before) => { const i = document.querySelector('.jupyter-widgets img, .widget-image');"
                               " return i && i.getAttribute('src') !== before; }", arg=before_img, timeout=60000)
        after_text = page.evaluate(READOUT + ".innerText", None)
        after_img = page.locator(".jupyter-widgets img, .widget-image").first.get_attribute("src")
        page.screenshot(path=str(tmp_path / "after.png"))
        times = panel_response_times(page, tmp_path)
        browser.close()
    print(f"before: {before_text}\nafter: {after_text}\nscreenshots: {tmp_path}")
    assert "ms (" in before_text and "ms (" in after_text and before_text != after_text
    assert before_img and after_img and before_img != after_img
    print("whole-panel updates (s): " + ", ".join(f"{m} {t:.2f}" for m, t in times))
    assert max(t for _, t in times) <= 1.0, times


READOUT = ("(before) => [...document.querySelectorAll('.widget-html-content')]"
           ".find(e => e.innerText.includes('predicted by'))")
PANEL = """() => {
  const imgs = [...document.querySelectorAll('.jupyter-widgets img, .widget-image')];
  const html = [...document.querySelectorAll('.widget-html-content')].find(e => e.innerText.includes('predicted by'));
  return [html ? html.innerText : '', ...imgs.slice(0, 2).map(i => i.getAttribute('src') || '')].join('|#|');
}"""


def panel_response_times(page, tmp_path) -> list[tuple[str, float]]:
    """Click the set and penalty toggles through student/teacher x decoupled/coarse and time each click until the
    readout, the drawing and the figure have all changed (the whole panel). The panel draws every run ahead in the
    background; a second pass times what a user sees once that is done."""
    moves = ["teacher", "coarse", "student", "decoupled"]
    times = []
    for attempt in range(2):
        times = []
        for label in moves:
            before = page.evaluate(PANEL).split("|#|")
            t0 = time.perf_counter()
            page.locator("button.widget-toggle-button", has_text=label).first.click()
            while True:
                now = page.evaluate(PANEL).split("|#|")
                if len(now) == len(before) == 3 and all(a != b for a, b in zip(now, before)):
                    break
                if time.perf_counter() - t0 > 30:
                    page.screenshot(path=str(tmp_path / f"stuck-{label}.png"))
                    raise AssertionError(f"the panel did not update after clicking {label!r} (screenshot kept)")
                time.sleep(0.02)
            times.append((label, time.perf_counter() - t0))
            page.screenshot(path=str(tmp_path / f"pass{attempt}-after-clicking-{label}.png"))
        if max(t for _, t in times) <= 1.0:
            break
    return times
