"""The browser page in a real browser: Playwright for Python driving Debian's headless Chromium
(/usr/bin/chromium, installed by .ci/run) against a real `fastsam-onnx serve` on 127.0.0.1 with the demo model.
Opens models/demo/example.jpg, clicks a point and drags a box, and checks the masks drawn on the canvas and the
JSON the page received. Takes the README's screenshot (the page after "Everything"): into the test's temporary
folder, or with ``FASTSAM_ONNX_SCREENSHOT=1`` onto docs/server-page.jpg (so that a test run leaves the tree as it
was)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

from fastsam_onnx import FastSAM  # noqa: E402
from serverkit import EXAMPLE, serve_process  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "server-page.jpg"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]


def _overlay_alpha(page, x: int, y: int) -> int:
    return page.evaluate("([x, y]) => document.getElementById('overlay').getContext('2d').getImageData(x, y, 1, 1).data[3]", [x, y])


def _wait_status(page, prefix: str) -> str:
    page.wait_for_function("p => document.getElementById('status').textContent.startsWith(p)", arg=prefix, timeout=60000)
    return page.locator("#status").text_content()


@pytest.mark.slow
def test_page_point_and_box_in_chromium(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (.ci/run installs it with apt-get)")
    everything = FastSAM().segment(str(EXAMPLE))
    ys, xs = np.nonzero(everything.mask(0))
    point = (int(xs[len(xs) // 2]), int(ys[len(ys) // 2]))
    x1, y1, x2, y2 = (int(v) for v in everything.boxes[1])
    with serve_process("--api-key", "page-key") as (_proc, url), sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 600})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(r.url))
            page.goto(url + "/#key=page-key")  # the page passes the key on (Authorization: Bearer)
            page.set_input_files("#file", str(EXAMPLE))
            assert _wait_status(page, "everything:").startswith(f"everything: {len(everything)} mask(s)")
            assert int(page.get_attribute("#overlay", "data-masks")) == len(everything)

            page.click("#clear")
            box = page.locator("#overlay").bounding_box()
            scale = box["width"] / 512
            page.mouse.click(box["x"] + point[0] * scale, box["y"] + point[1] * scale)
            _wait_status(page, "prompt:")
            last = page.evaluate("window.fastsam.last")
            assert len(last["instances"]) >= 1 and all(i["selected_by"] == ["point:0"] for i in last["instances"])
            assert last["cached"] is True and len(last["image_id"]) == 32
            assert _overlay_alpha(page, *point) > 0  # the selected mask is drawn where we clicked

            page.click("#clear")
            assert _overlay_alpha(page, *point) == 0
            page.mouse.move(box["x"] + (x1 - 3) * scale, box["y"] + (y1 - 3) * scale)
            page.mouse.down()
            page.mouse.move(box["x"] + (x2 + 3) * scale, box["y"] + (y2 + 3) * scale, steps=5)
            page.mouse.up()
            page.wait_for_function("() => window.fastsam.last && window.fastsam.last.instances.some("
                                   "i => (i.selected_by || []).includes('box:0'))", timeout=60000)
            last = page.evaluate("window.fastsam.last")
            assert [i["selected_by"] for i in last["instances"]] == [["box:0"]]
            bx = [round(v) for v in last["instances"][0]["box"]]
            cx, cy = (bx[0] + bx[2]) // 2, (bx[1] + bx[3]) // 2
            ys2, xs2 = np.nonzero(everything.mask(1))
            assert _overlay_alpha(page, int(xs2[len(xs2) // 2]), int(ys2[len(ys2) // 2])) > 0 or _overlay_alpha(page, cx, cy) > 0
            assert errors == []
            page.click("#everything")  # the README's picture: every mask in its colour, with outlines
            _wait_status(page, "everything:")
            shot = page.screenshot(type="jpeg", quality=80)
        finally:
            browser.close()
    from fastsam_onnx.fileio import atomic_write_bytes

    dest = SCREENSHOT if os.environ.get("FASTSAM_ONNX_SCREENSHOT") == "1" else tmp_path / SCREENSHOT.name
    dest.parent.mkdir(exist_ok=True)
    atomic_write_bytes(dest, shot)
    assert dest.read_bytes() == shot
    assert shot[:3] == b"\xff\xd8\xff"
