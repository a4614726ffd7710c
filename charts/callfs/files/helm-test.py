"""`helm test`: the CallFS API end to end through the release's Services.

Uploads a file through the gateway, downloads and lists it, generates a single-use link on the
link-service, consumes it (and checks a second use is refused), deletes the file and checks it
is gone. Standard library only, so it runs in the CallFS image as it is.

Environment: GATEWAY_URL and LINKS_URL (the Services), KEY_FILE (the `api-keys` key of the
auth Secret; the first key is used). Exit status 0 when every step passed, 1 otherwise.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

GATEWAY = os.environ["GATEWAY_URL"].rstrip("/")
LINKS = os.environ["LINKS_URL"].rstrip("/")
with open(os.environ["KEY_FILE"], encoding="utf-8") as keys:
    API_KEY = keys.read().strip().split(",")[0]
TIMEOUT = 30


class Failed(Exception):
    """A step got an answer other than the one the API promises."""


def call(method, url, body=None, auth=True, headers=None):
    """Send one request; return (status, headers, body bytes) whatever the status."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    if auth:
        request.add_header("Authorization", f"Bearer {API_KEY}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def expect(step, status, wanted, body):
    """Print the step; raise Failed when the status is not the wanted one."""
    print(f"{step}: {status}", flush=True)
    if status != wanted:
        raise Failed(f"{step}: expected {wanted}, got {status}: {body[:300]!r}")


def wait_for_health():
    """GET /health on both Services, retrying for a minute while they come up."""
    for base in (GATEWAY, LINKS):
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _, body = call("GET", f"{base}/health", auth=False)
                if status == 200 and json.loads(body).get("status") == "ok":
                    print(f"health {base}: ok", flush=True)
                    break
            except (OSError, ValueError) as error:
                status, body = 0, str(error).encode()
            if time.monotonic() > deadline:
                raise Failed(f"health {base}: {status} {body[:300]!r}")
            time.sleep(2)


def exercise():
    """Every step, in order; the test directory is removed whatever happens."""
    folder = f"/helm-test-{uuid.uuid4().hex}"
    path = f"{folder}/hello.txt"
    content = f"CallFS helm test {uuid.uuid4()}\n".encode()
    wait_for_health()
    try:
        status, _, body = call("POST", f"{GATEWAY}/v1/files{path}", content)
        expect("upload", status, 201, body)

        status, _, body = call("GET", f"{GATEWAY}/v1/files{path}")
        expect("download", status, 200, body)
        if body != content:
            raise Failed(f"download: got {body[:100]!r}, uploaded {content!r}")

        status, _, body = call("GET", f"{GATEWAY}/v1/directories{folder}")
        expect("list", status, 200, body)
        listed = [item["path"] for item in json.loads(body)["items"]]
        if listed != [path]:
            raise Failed(f"list: expected [{path}], got {listed}")

        request = json.dumps({"path": path, "expiry_seconds": 300}).encode()
        headers = {"Content-Type": "application/json"}
        status, _, body = call("POST", f"{LINKS}/v1/links/generate", request, headers=headers)
        expect("link generate", status, 201, body)
        token = json.loads(body)["token"]

        status, _, body = call("GET", f"{LINKS}/download/{token}", auth=False)
        expect("link download", status, 200, body)
        if body != content:
            raise Failed(f"link download: got {body[:100]!r}, uploaded {content!r}")

        status, _, body = call("GET", f"{LINKS}/download/{token}", auth=False)
        expect("link reuse refused", status, 410, body)
        code = json.loads(body).get("code")
        if code != "LINK_USED":
            raise Failed(f"link reuse refused: expected LINK_USED, got {code}")

        status, _, body = call("DELETE", f"{GATEWAY}/v1/files{path}")
        expect("delete", status, 204, body)

        status, _, body = call("GET", f"{GATEWAY}/v1/files{path}")
        expect("deleted file is gone", status, 404, body)
    finally:
        try:
            call("DELETE", f"{GATEWAY}/v1/files{folder}?recursive=true")
        except OSError as error:
            print(f"cleanup of {folder}: {error}", file=sys.stderr, flush=True)


def main():
    """Run the steps; report the first failure."""
    try:
        exercise()
    except (Failed, OSError, ValueError, KeyError) as error:
        print(f"FAILED: {error}", file=sys.stderr, flush=True)
        return 1
    print("CallFS API test passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
