"""The control page in a real browser: the README's pipeline on a titled table dataset (a small config),
`padirec serve` on its registered model, and headless Chromium (Debian's `chromium` + `chromium-driver`) driven by
selenium. Moving the accuracy slider must change the top-k list and move the curve's marker.

Set PADIREC_SCREENSHOT=PATH to keep a screenshot of the page (docs/serving-control-page.png is one).
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest
from support import base_env, http_ok, start, stop, wait_for

from padirec.data.synthetic import SyntheticConfig, make_synthetic

# about 3 min here (2 cores): the small pipeline, a Serve app, a browser; run with -m slow
pytestmark = pytest.mark.slow

webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def write_titled_table(directory) -> tuple:
    """The synthetic data as the generic tables, each item titled "Item <id>" (the categories table's title)."""
    raw = make_synthetic(SyntheticConfig(n_users=120, n_items=60, seed=3))
    interactions, categories = directory / "interactions.csv", directory / "items.csv"
    interactions.write_text("user,item,timestamp\n" + "".join(
        f"u{u},{i},{t}\n" for u, i, t in zip(raw.users.tolist(), raw.items.tolist(), raw.timestamps.tolist())))
    categories.write_text("item,categories,title\n" + "".join(
        f"{i},{'|'.join(c)},Item {i}\n" for i, c in raw.item_categories.items()))
    return interactions, categories


# the pipeline at a size where w visibly moves the list (--small's 3-epoch adapters barely leave their start): about
# 90 s here
CONFIG = """
pretrain: {epochs: 5}
sweep: {grid_step: 0.25, seeds: [0]}
adapter: {epochs: 8, keep_last: 3, lr: 0.01}
dit_train: {epochs: 150, dit: {hidden: 32, depth: 1, heads: 2, ffn: 64}}
evaluate: {methods: [PaDiRec], seeds: 2, samples: 1, timing_repeats: 1, retrain_timing_epochs: 0}
"""


def page_state(browser) -> tuple[list[str], tuple[str, str], str]:
    """The list's lines, the marker's position and the w the list is for, read in one script (the page re-renders
    the list as it goes)."""
    items, marker, weights = browser.execute_script(
        "const m = document.getElementById('marker');"
        "return [Array.from(document.querySelectorAll('#list li'), (li) => li.textContent),"
        "        m ? [m.getAttribute('cx'), m.getAttribute('cy')] : [null, null],"
        "        document.getElementById('list').dataset.weights];")
    return items, tuple(marker), weights


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver")
def test_moving_a_slider_changes_the_list_and_the_marker(tmp_path, free_port):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    interactions, categories = write_titled_table(tmp_path)
    env = {**base_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "PADIREC_CACHE_DIR": str(tmp_path / "cache")}
    (tmp_path / "config.yaml").write_text(CONFIG)
    pipeline = start([sys.executable, "-m", "padirec.cli", "pipeline", "--config", tmp_path / "config.yaml",
                      "--quiet", "--dataset", "table",
                      "--data-dir", interactions, "--categories", categories, "--output-dir", tmp_path / "out"],
                     env, tmp_path / "pipeline.log", cwd=tmp_path)
    assert pipeline.wait(900) == 0, (tmp_path / "pipeline.log").read_text()[-3000:]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start([sys.executable, "-m", "padirec.cli", "serve", "--model", "models:/padirec-dit@champion",
                    "--port", port, "--steps", "1"], env, tmp_path / "serve.log", cwd=tmp_path)
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,960"):
        options.add_argument(flag)
    browser = None
    try:
        wait_for(lambda: http_ok(url + "/healthz"), "padirec serve", 240, [server], tmp_path / "serve.log")
        browser = webdriver.Chrome(service=Service(DRIVER), options=options)
        browser.get(url + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: page_state(b)[2] == "0.5,0.5" and page_state(b)[1][0])  # the first list: w = (0.5, 0.5)
        assert "Item " in browser.find_element("id", "list").text  # titles from the categories table
        assert "ndcg@10" in browser.find_element("id", "metrics").text  # a user of the test split: its metrics
        assert browser.find_elements("css selector", "#curve polyline[data-method=PaDiRec]")
        assert browser.find_elements("css selector", "#curve polyline[data-method=Retrain]")
        before = page_state(browser)

        slider = browser.find_element("id", "w-accuracy")
        slider.send_keys(Keys.END)  # w = (1, 0)
        wait.until(lambda b: b.find_element("id", "weights").text == "(accuracy 1.00, diversity 0.00)")
        wait.until(lambda b: page_state(b)[2] == "1,0")
        after = page_state(browser)
        assert after[0] != before[0] and len(after[0]) == 10, "the list did not change"
        assert after[1] != before[1], "the curve's marker did not move"
        assert browser.find_element("id", "w-diversity").get_attribute("value") == "0"  # the simplex follows
        slider.send_keys(Keys.HOME)  # w = (0, 1)
        wait.until(lambda b: page_state(b)[2] == "0,1")
        assert page_state(browser)[0] != after[0] and page_state(browser)[1] != after[1]
        if os.environ.get("PADIREC_SCREENSHOT"):
            for _ in range(60):
                slider.send_keys(Keys.ARROW_RIGHT)  # to w = (0.6, 0.4) for the picture
            wait.until(lambda b: page_state(b)[2] == "0.6,0.4")
            browser.save_screenshot(os.environ["PADIREC_SCREENSHOT"])
    finally:
        if browser is not None:
            browser.quit()
        stop(server)
