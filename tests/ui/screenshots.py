"""The screenshots of the web file browser in docs/ui.md, from a real ``callfs dev``.

.venv/bin/python -m tests.ui.screenshots [docs/images]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect, sync_playwright

from tests.support.dev import TwoUsers, two_user_dev
from tests.ui.conftest import CHROMIUM, LAUNCH_ARGS, auth

TREE = {
    "/projects/reports/": None,
    "/projects/photos/": None,
    "/projects/budget-2026.csv": 48_213,
    "/projects/meeting-notes.md": 3_412,
    "/projects/design.pdf": 1_843_200,
    "/projects/logo.svg": 9_876,
}


def populate(server: TwoUsers) -> None:
    with httpx.Client(base_url=server.url, headers=auth(server.key)) as client:
        for path, size in TREE.items():
            body = None if size is None else os.urandom(size)
            client.post(f"/v1/files{path}", content=body).raise_for_status()
        client.patch("/v1/files/projects/reports/", json={"mode": "0750"}).raise_for_status()
        client.patch("/v1/files/projects/budget-2026.csv", json={"mode": "0640"})


def sign_in(page: Page, server: TwoUsers) -> None:
    page.goto(f"{server.url}/ui/#/projects")
    page.get_by_label("API key").fill(server.key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator('#entries tr[data-name="design.pdf"]')).to_be_visible()


def shoot(server: TwoUsers, out: Path) -> None:
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        page = browser.new_page(viewport={"width": 1100, "height": 600})
        sign_in(page, server)
        page.screenshot(path=str(out / "ui-browse.png"))

        # Uploads slowed to 1 MiB/s, so the bars are caught moving.
        session = page.context.new_cdp_session(page)
        session.send(
            "Network.emulateNetworkConditions",
            {
                "offline": False,
                "latency": 0,
                "downloadThroughput": -1,
                "uploadThroughput": 1024 * 1024,
            },
        )
        files = [
            {"name": "holiday.mov", "mimeType": "video/quicktime", "buffer": os.urandom(6 << 20)},
            {"name": "slides.pdf", "mimeType": "application/pdf", "buffer": os.urandom(900_000)},
        ]
        page.locator("#upload-input").set_input_files(files)
        expect(page.locator('#uploads li[data-name="slides.pdf"] .status')).to_have_text("done")
        moving = page.locator('#uploads li[data-name="holiday.mov"] progress')
        moving.evaluate(
            "bar => new Promise(done => { const check = () => bar.value >= 20 "
            "? done() : requestAnimationFrame(check); check(); })"
        )
        page.screenshot(path=str(out / "ui-upload.png"))
        browser.close()


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "docs/images")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch, two_user_dev(Path(scratch) / "data") as server:
        populate(server)
        shoot(server, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
