"""The web file browser end to end: a real ``callfs dev`` and headless Chromium."""

from __future__ import annotations

import os
import re
from urllib.parse import quote

import httpx
from playwright.sync_api import Locator, Page, expect

from tests.support.dev import TwoUsers
from tests.ui.conftest import auth


def sign_in(page: Page, server: TwoUsers, key: str, path: str = "/") -> None:
    """Open the page at ``path`` (``/`` through the root's redirect) and sign in with ``key``."""
    if path == "/":
        page.goto(server.url + "/")
    else:
        page.goto(f"{server.url}/ui/#{quote(path)}")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def row(page: Page, name: str) -> Locator:
    return page.locator(f'#entries tr[data-name="{name}"]')


def dialog(page: Page) -> Locator:
    return page.locator("#dialog")


def alert(page: Page) -> Locator:
    return page.get_by_role("alert")


def test_root_leads_to_the_page_and_a_wrong_key_shows_the_api_error(
    page: Page, server: TwoUsers
) -> None:
    page.goto(server.url + "/")
    expect(page).to_have_url(server.url + "/ui/")
    expect(page.get_by_label("API key")).to_be_focused()
    page.get_by_label("API key").fill("not-a-key-of-this-server")
    page.get_by_label("API key").press("Enter")
    expect(alert(page)).to_contain_text("AUTHENTICATION_FAILED")
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0


def test_the_key_stays_in_the_tab_session_and_sign_out_forgets_it(
    page: Page, server: TwoUsers
) -> None:
    sign_in(page, server, server.key)
    assert page.evaluate("Object.values(sessionStorage)") == [server.key]
    assert page.evaluate("localStorage.length") == 0
    assert server.key not in page.url
    page.reload()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_a_file_from_upload_to_delete(page: Page, server: TwoUsers, home: str) -> None:
    name = home.strip("/")
    sign_in(page, server, server.key)
    # Browse into the directory from the root, and back and forth with the history.
    page.get_by_role("link", name=name, exact=True).click()
    expect(page).to_have_url(re.compile(f"/ui/#/{name}$"))
    expect(page.locator("#crumbs [aria-current=page]")).to_have_text(name)
    expect(page.locator("#summary")).to_have_text("0 entries")

    content = os.urandom(1536 * 1024)
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Upload files").click()
    chooser.value.set_files(
        [{"name": "report.bin", "mimeType": "application/octet-stream", "buffer": content}]
    )
    upload = page.locator('#uploads li[data-name="report.bin"]')
    expect(upload.locator(".percent")).to_have_text("100 %")
    expect(upload.locator("progress")).to_have_js_property("value", 100)
    expect(upload.locator(".status")).to_have_text("done")
    expect(row(page, "report.bin").locator("[data-column=size]")).to_have_text("1.5 MiB")
    expect(row(page, "report.bin").locator("[data-column=mode]")).to_have_text("rw-r--r--")
    expect(row(page, "report.bin").locator("[data-column=owner]")).to_have_text("api-user-1")

    with page.expect_download() as downloaded:
        page.get_by_role("button", name="Download report.bin").click()
    assert downloaded.value.suggested_filename == "report.bin"
    with open(downloaded.value.path(), "rb") as saved:
        assert saved.read() == content

    page.get_by_role("button", name="Rename report.bin").click()
    dialog(page).get_by_label("New name or path").fill("renamed.bin")
    dialog(page).get_by_role("button", name="Rename").click()
    expect(row(page, "renamed.bin")).to_be_visible()
    expect(row(page, "report.bin")).to_have_count(0)

    page.get_by_role("button", name="Mode renamed.bin").click()
    dialog(page).get_by_label("Mode, in octal").fill("0600")
    expect(dialog(page).locator("output")).to_have_text("rw-------")
    dialog(page).get_by_role("button", name="Change").click()
    expect(row(page, "renamed.bin").locator("[data-column=mode]")).to_have_text("rw-------")

    page.get_by_role("button", name="Share renamed.bin").click()
    dialog(page).get_by_label("Expires after").select_option(label="5 minutes")
    dialog(page).get_by_role("button", name="Create link").click()
    link = dialog(page).get_by_label("Link")
    expect(link).to_have_value(re.compile(r"/download/"))
    url = link.input_value()
    dialog(page).get_by_role("button", name="Done").click()
    expect(dialog(page)).to_be_hidden()
    assert httpx.get(url).content == content
    again = httpx.get(url)
    assert (again.status_code, again.json()["code"]) == (410, "LINK_USED")

    page.get_by_role("button", name="Delete renamed.bin").click()
    expect(dialog(page)).to_contain_text("The file will be deleted")
    dialog(page).get_by_role("button", name="Delete").click()
    expect(row(page, "renamed.bin")).to_have_count(0)
    expect(page.locator("#notice")).to_contain_text(f"Deleted {home}/renamed.bin")
    gone = httpx.head(f"{server.url}/v1/files{home}/renamed.bin", headers=auth(server.key))
    assert gone.status_code == 404

    page.go_back()
    expect(page).to_have_url(server.url + "/ui/")
    expect(row(page, name)).to_be_visible()


def test_another_user_sees_the_permission_error(page: Page, server: TwoUsers, home: str) -> None:
    with httpx.Client(base_url=server.url, headers=auth(server.key)) as owner:
        owner.post(f"/v1/files{home}/private/", params={"mode": "0700"}).raise_for_status()
        owner.post(f"/v1/files{home}/mine.txt", content=b"mine").raise_for_status()
    sign_in(page, server, server.other_key, f"{home}/private")
    expect(alert(page)).to_contain_text("PERMISSION_DENIED")
    expect(page.locator("#entries")).to_have_text("This folder could not be listed.")

    page.locator("#crumbs").get_by_role("link", name=home.strip("/")).click()
    page.get_by_role("button", name="Delete mine.txt").click()
    dialog(page).get_by_role("button", name="Delete").click()
    expect(alert(page)).to_contain_text("PERMISSION_DENIED")
    expect(row(page, "mine.txt")).to_be_visible()


def test_a_large_directory_comes_a_page_at_a_time(page: Page, server: TwoUsers, home: str) -> None:
    with httpx.Client(base_url=server.url, headers=auth(server.key)) as client:
        for number in range(105):
            client.post(f"/v1/files{home}/f{number:03}.txt", content=b"x").raise_for_status()
    sign_in(page, server, server.key, home)
    expect(page.locator("#summary")).to_have_text("100 entries, more to load")
    expect(page.locator("#entries tr")).to_have_count(100)
    page.get_by_role("button", name="Load more").click()
    expect(page.locator("#summary")).to_have_text("105 entries")
    expect(page.get_by_role("button", name="Load more")).to_be_hidden()


def test_directories_first_sorting_and_filter(page: Page, server: TwoUsers, home: str) -> None:
    with httpx.Client(base_url=server.url, headers=auth(server.key)) as client:
        client.post(f"/v1/files{home}/zeta/").raise_for_status()
        client.post(f"/v1/files{home}/alpha.txt", content=b"a" * 10).raise_for_status()
        client.post(f"/v1/files{home}/beta.txt", content=b"b" * 2000).raise_for_status()
    sign_in(page, server, server.key, home)
    names = page.locator("#entries tr")
    expect(names.first).to_have_attribute("data-name", "zeta")
    assert names.evaluate_all("rows => rows.map(r => r.dataset.name)") == [
        "zeta",
        "alpha.txt",
        "beta.txt",
    ]
    size = page.get_by_role("button", name="Size")
    size.click()
    size.click()
    expect(page.locator("th[data-column=size]")).to_have_attribute("aria-sort", "descending")
    assert names.evaluate_all("rows => rows.map(r => r.dataset.name)") == [
        "zeta",
        "beta.txt",
        "alpha.txt",
    ]
    expect(row(page, "beta.txt").locator("[data-column=size]")).to_have_text("2.0 KiB")
    page.get_by_label("Filter by name").fill("BET")
    expect(names).to_have_count(1)
    expect(page.locator("#summary")).to_have_text("3 entries (1 shown)")


def test_new_folder_then_delete_it_with_its_contents(
    page: Page, server: TwoUsers, home: str
) -> None:
    sign_in(page, server, server.key, home)
    page.get_by_role("button", name="New folder").click()
    dialog(page).get_by_label("Name").fill("made")
    dialog(page).get_by_label("Name").press("Enter")
    expect(row(page, "made").get_by_role("link", name="made")).to_be_visible()
    headers = auth(server.key)
    httpx.post(f"{server.url}/v1/files{home}/made/inner.txt", content=b"i", headers=headers)

    page.get_by_role("button", name="Delete made").click()
    expect(dialog(page)).to_contain_text("everything in it")
    dialog(page).get_by_role("button", name="Delete").click()
    expect(row(page, "made")).to_have_count(0)
    assert httpx.head(f"{server.url}/v1/files{home}/made", headers=headers).status_code == 404


def test_dropped_files_upload_and_an_existing_name_offers_replace(
    page: Page, server: TwoUsers, home: str
) -> None:
    sign_in(page, server, server.key, home)
    drop = """([name, text]) => {
        const data = new DataTransfer();
        data.items.add(new File([text], name));
        return data;
    }"""
    first = page.evaluate_handle(drop, ["dropped.txt", "hello"])
    page.dispatch_event("main", "drop", {"dataTransfer": first})
    expect(row(page, "dropped.txt").locator("[data-column=size]")).to_have_text("5 B")

    second = page.evaluate_handle(drop, ["dropped.txt", "hello, again"])
    page.dispatch_event("main", "drop", {"dataTransfer": second})
    expect(alert(page)).to_contain_text("FILE_ALREADY_EXISTS")
    page.get_by_role("button", name="Replace dropped.txt").click()
    expect(row(page, "dropped.txt").locator("[data-column=size]")).to_have_text("12 B")


def test_dialogs_close_with_escape_and_change_nothing(
    page: Page, server: TwoUsers, home: str
) -> None:
    httpx.post(f"{server.url}/v1/files{home}/keep.txt", content=b"k", headers=auth(server.key))
    sign_in(page, server, server.key, home)
    page.get_by_role("button", name="Delete keep.txt").focus()
    page.keyboard.press("Enter")
    expect(dialog(page)).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog(page)).to_be_hidden()
    expect(row(page, "keep.txt")).to_be_visible()


def test_phone_width_needs_no_sideways_scrolling(page: Page, server: TwoUsers, home: str) -> None:
    httpx.post(f"{server.url}/v1/files{home}/a.txt", content=b"a", headers=auth(server.key))
    page.set_viewport_size({"width": 375, "height": 740})
    sign_in(page, server, server.key, home)
    expect(row(page, "a.txt")).to_be_visible()
    expect(row(page, "a.txt").locator("[data-column=owner]")).to_be_visible()
    expect(page.get_by_role("button", name="Delete a.txt")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
