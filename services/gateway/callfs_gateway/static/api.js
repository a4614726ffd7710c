// The CallFS REST API as the page uses it (docs/api.md): every call carries the tab's
// API key as a bearer header, and every refusal becomes an ApiError naming its code.

// The page is <base URL>/ui/: the API is one level up, wherever an ingress puts it.
const BASE = new URL("../", document.baseURI);
const KEY = "callfs.apiKey";

/** An answer the API refused, or no answer at all (code NETWORK_ERROR). */
export class ApiError extends Error {
  constructor(status, code, detail) {
    super(`${code}: ${detail}`);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

/** The API key, kept for this tab's session only, never in a URL. */
export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  set key(value) {
    sessionStorage.setItem(KEY, value);
  },
  forget() {
    sessionStorage.removeItem(KEY);
  },
};

/** "/a/b c" → "a/b%20c": each segment percent-encoded once, as the API decodes it. */
export function encodePath(path) {
  return path
    .split("/")
    .filter((segment) => segment !== "")
    .map(encodeURIComponent)
    .join("/");
}

/** The parent of "/a/b" is "/a"; of "/a" it is "/". */
export function parentOf(path) {
  const cut = path.lastIndexOf("/");
  return cut <= 0 ? "/" : path.slice(0, cut);
}

/** The absolute URL of an API route plus query parameters (those not null). */
function endpoint(route, query = {}) {
  const url = new URL(route, BASE);
  for (const [name, value] of Object.entries(query)) {
    if (value !== null && value !== undefined) url.searchParams.set(name, String(value));
  }
  return url;
}

/** The ApiError for a refused answer: the API's own code and message when it sent them. */
function refusal(status, statusText, body) {
  try {
    const parsed = JSON.parse(body);
    if (parsed && typeof parsed.code === "string") {
      return new ApiError(status, parsed.code, parsed.message || statusText);
    }
  } catch {
    // Not the API's JSON (a proxy's page, say): named by its HTTP status below.
  }
  return new ApiError(status, `HTTP_${status}`, statusText || "the request failed");
}

async function call(method, route, { query, body, json, key } = {}) {
  const headers = { Authorization: `Bearer ${key ?? session.key ?? ""}` };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(endpoint(route, query), { method, headers, body, cache: "no-store" });
  } catch {
    throw new ApiError(0, "NETWORK_ERROR", "the server could not be reached");
  }
  if (!response.ok) {
    throw refusal(response.status, response.statusText, await response.text());
  }
  return response;
}

/** One page of a directory's children: {items, next_cursor}. */
export async function listPage(path, { cursor = null, limit = 100, key } = {}) {
  const route = `v1/directories/${encodePath(path)}`;
  const response = await call("GET", route, { query: { limit, cursor }, key });
  return response.json();
}

/** Create the directory at path. */
export async function makeDirectory(path) {
  await call("POST", `v1/files/${encodePath(path)}/`);
}

/** Move (or rename) path to destination; the entry's new path. */
export async function move(path, destination) {
  const response = await call("PATCH", `v1/files/${encodePath(path)}`, {
    json: { destination },
  });
  return (await response.json()).path;
}

/** Change the mode of path ("0640"). */
export async function changeMode(path, mode) {
  await call("PATCH", `v1/files/${encodePath(path)}`, { json: { mode } });
}

/** Delete path; a directory with everything below it when recursive. */
export async function remove(path, { recursive = false } = {}) {
  const query = recursive ? { recursive: "true" } : {};
  await call("DELETE", `v1/files/${encodePath(path)}`, { query });
}

/** The bytes of the file at path, as a Blob. */
export async function read(path) {
  return (await call("GET", `v1/files/${encodePath(path)}`)).blob();
}

/** A single-use download link: {url, token, expires_at}. */
export async function share(path, expirySeconds) {
  const response = await call("POST", "v1/links/generate", {
    json: { path, expiry_seconds: expirySeconds },
  });
  return response.json();
}

/**
 * Upload file to path, streamed from disk; onProgress(fraction) as bytes leave.
 * Creates (POST: an existing entry answers FILE_ALREADY_EXISTS) unless replace (PUT).
 * XMLHttpRequest, not fetch: only it reports upload progress.
 */
export function upload(path, file, { replace = false, onProgress = () => {} } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(replace ? "PUT" : "POST", endpoint(`v1/files/${encodePath(path)}`));
    xhr.setRequestHeader("Authorization", `Bearer ${session.key ?? ""}`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable && event.total > 0) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve(JSON.parse(xhr.responseText));
      } else {
        reject(refusal(xhr.status, xhr.statusText, xhr.responseText));
      }
    });
    xhr.addEventListener("error", () => {
      reject(new ApiError(0, "NETWORK_ERROR", "the upload broke off"));
    });
    xhr.send(file);
  });
}
