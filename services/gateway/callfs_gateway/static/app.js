// The web file browser: sign in with an API key, browse a directory at #/path, upload
// into it, and download, share, rename, chmod or delete its entries. Every outcome is
// told: a notice for what worked, an alert naming the API's code for what did not.

import * as api from "./api.js";
import { humanSize, isMode, localTime, symbolicMode } from "./format.js";

const PAGE = 100;
const $ = (id) => document.getElementById(id);

const state = {
  path: "/",
  items: [],
  cursor: null, // the next page's; null once the directory is loaded whole
  loading: false,
  failed: false, // the last page asked for was refused
  sort: { key: "name", ascending: true },
  filter: "",
  generation: 0, // answers for a directory the user has left are dropped
};

/** An element with attributes (on* are listeners; false and null are left out) and children. */
function h(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

// Paths and the URL: #/a/b names the directory /a/b, so back, forward and reload work.

function join(directory, name) {
  return directory === "/" ? `/${name}` : `${directory}/${name}`;
}

function hashOf(path) {
  return `#/${api.encodePath(path)}`;
}

function pathFromHash() {
  try {
    const segments = location.hash.replace(/^#/, "").split("/").filter(Boolean);
    return `/${segments.map(decodeURIComponent).join("/")}`;
  } catch {
    return "/";
  }
}

// Messages

function notice(text) {
  $("error").hidden = true;
  $("notice").textContent = text;
}

function showError(error) {
  const text = error instanceof api.ApiError ? error.message : String(error.message ?? error);
  $("error-text").textContent = text;
  $("error").hidden = false;
  $("notice").textContent = "";
}

/** Tell an error; a key the API no longer takes is forgotten. */
function fail(error) {
  showError(error);
  if (error instanceof api.ApiError && error.status === 401) {
    api.session.forget();
    showSignIn();
  }
}

// Signing in and out

function showSignIn() {
  $("browser").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("api-key").focus();
}

function showBrowser() {
  $("sign-in").hidden = true;
  $("browser").hidden = false;
  $("sign-out").hidden = false;
  open(pathFromHash());
}

async function signIn(event) {
  event.preventDefault();
  const input = $("api-key");
  const key = input.value.trim();
  try {
    await api.listPage("/", { limit: 1, key });
  } catch (error) {
    // Only a refused key or no server keeps the user out: the listing says the rest.
    if (error.status === 401 || error.status === 0) {
      showError(error);
      input.select();
      return;
    }
  }
  api.session.key = key;
  input.value = "";
  notice("Signed in.");
  showBrowser();
}

function signOut() {
  api.session.forget();
  state.generation += 1;
  state.items = [];
  $("entries").replaceChildren();
  $("uploads").replaceChildren();
  notice("Signed out: this tab no longer holds the key.");
  showSignIn();
}

// Listing

async function open(path) {
  state.generation += 1;
  state.path = path;
  state.items = [];
  state.cursor = null;
  renderCrumbs();
  await loadPage(state.generation, null);
}

function refresh() {
  return open(state.path);
}

async function loadPage(generation, cursor) {
  state.loading = true;
  state.failed = false;
  render();
  try {
    const page = await api.listPage(state.path, { cursor, limit: PAGE });
    if (generation !== state.generation) return;
    state.items.push(...page.items);
    state.cursor = page.next_cursor;
  } catch (error) {
    if (generation !== state.generation) return;
    state.failed = true;
    fail(error);
  } finally {
    if (generation === state.generation) {
      state.loading = false;
      render();
    }
  }
}

const ORDER = {
  name: (a, b) => a.name.localeCompare(b.name),
  size: (a, b) => a.size - b.size,
  mode: (a, b) => Number.parseInt(a.mode, 8) - Number.parseInt(b.mode, 8),
  owner: (a, b) => a.owner.localeCompare(b.owner),
  group: (a, b) => a.group.localeCompare(b.group),
  mtime: (a, b) => Date.parse(a.mtime) - Date.parse(b.mtime),
};

/** Directories first, then by the chosen column, then by name. */
function sorted(items) {
  const { key, ascending } = state.sort;
  const sign = ascending ? 1 : -1;
  const isDirectory = (entry) => (entry.type === "directory" ? 1 : 0);
  return [...items].sort(
    (a, b) =>
      isDirectory(b) - isDirectory(a) || sign * ORDER[key](a, b) || a.name.localeCompare(b.name),
  );
}

function render() {
  const filter = state.filter.toLowerCase();
  const shown = sorted(state.items).filter((entry) => entry.name.toLowerCase().includes(filter));
  const rows = shown.map(row);
  if (rows.length === 0 && !state.loading) {
    const empty = state.failed
      ? "This folder could not be listed."
      : state.items.length === 0
        ? "This folder is empty."
        : "No names match the filter.";
    rows.push(h("tr", {}, h("td", { colspan: 7, class: "empty" }, empty)));
  }
  $("entries").replaceChildren(...rows);
  for (const header of document.querySelectorAll("th[data-column]")) {
    const sorting = header.dataset.column === state.sort.key;
    const order = state.sort.ascending ? "ascending" : "descending";
    if (sorting) header.setAttribute("aria-sort", order);
    else header.removeAttribute("aria-sort");
  }
  $("summary").textContent = summary(shown.length);
  $("more").hidden = state.cursor === null;
  $("more").disabled = state.loading;
}

function summary(shown) {
  if (state.loading) return "Loading…";
  const loaded = state.items.length;
  const count = `${loaded} ${loaded === 1 ? "entry" : "entries"}`;
  const more = state.cursor === null ? "" : ", more to load";
  const filtered = shown === loaded ? "" : ` (${shown} shown)`;
  return `${count}${more}${filtered}`;
}

function renderCrumbs() {
  const segments = state.path.split("/").filter(Boolean);
  const crumb = (path, label) =>
    h(
      "li",
      {},
      h("a", { href: hashOf(path), "aria-current": path === state.path && "page" }, label),
    );
  const crumbs = [crumb("/", "Root")];
  segments.forEach((name, index) => {
    crumbs.push(crumb(`/${segments.slice(0, index + 1).join("/")}`, name));
  });
  $("crumbs").replaceChildren(...crumbs);
  document.title = `${state.path} · CallFS`;
}

function row(entry) {
  const directory = entry.type === "directory";
  const name = directory
    ? h("a", { href: hashOf(entry.path), class: "entry directory" }, entry.name)
    : h("span", { class: "entry file" }, entry.name);
  return h(
    "tr",
    { "data-name": entry.name },
    h("th", { scope: "row", "data-column": "name" }, name),
    h(
      "td",
      { "data-column": "size", title: directory ? null : `${entry.size} bytes` },
      directory ? "—" : humanSize(entry.size),
    ),
    h("td", { "data-column": "mode", class: "mono", title: entry.mode }, symbolicMode(entry.mode)),
    h("td", { "data-column": "owner" }, entry.owner),
    h("td", { "data-column": "group" }, entry.group),
    h(
      "td",
      { "data-column": "mtime" },
      h("time", { datetime: entry.mtime, title: entry.mtime }, localTime(entry.mtime)),
    ),
    h("td", { "data-column": "actions" }, h("div", { class: "actions" }, ...actions(entry))),
  );
}

function actions(entry) {
  const button = (label, handler) =>
    h(
      "button",
      { type: "button", "aria-label": `${label} ${entry.name}`, onclick: () => handler(entry) },
      label,
    );
  const file = entry.type === "file";
  return [
    file ? button("Download", download) : null,
    file ? button("Share", share) : null,
    button("Rename", rename),
    button("Mode", changeMode),
    button("Delete", remove),
  ];
}

// Dialogs

/**
 * Ask in a modal dialog; resolves to the fields' values ({} without fields), or null
 * when cancelled. A field: {name, label, value, options, pattern, readonly, describe, button}.
 */
function ask({ title, text, fields = [], confirm = "OK", cancel = "Cancel", danger = false }) {
  const dialog = $("dialog");
  const form = $("dialog-form");
  const inputs = {};
  const body = text ? [h("p", {}, text)] : [];
  for (const field of fields) {
    const id = `field-${field.name}`;
    const input = field.options
      ? h(
          "select",
          { id, name: field.name },
          ...field.options.map(([value, label]) =>
            h("option", { value, selected: value === field.value }, label),
          ),
        )
      : h("input", {
          id,
          name: field.name,
          value: field.value ?? "",
          required: true,
          pattern: field.pattern,
          readonly: field.readonly,
          inputmode: field.inputmode,
          autocomplete: "off",
          spellcheck: "false",
        });
    inputs[field.name] = input;
    const parts = [h("label", { for: id }, field.label), input];
    if (field.describe) {
      const description = h("output", { for: id, class: "describe" }, field.describe(input.value));
      input.addEventListener("input", () => {
        description.textContent = field.describe(input.value);
      });
      parts.push(description);
    }
    if (field.button) {
      const said = h("output", { for: id, class: "describe", role: "status" });
      const onclick = () => field.button.run(input, said);
      parts.push(h("button", { type: "button", onclick }, field.button.label), said);
    }
    body.push(h("div", { class: "field" }, ...parts));
  }
  $("dialog-title").textContent = title;
  $("dialog-body").replaceChildren(...body);
  $("dialog-confirm").textContent = confirm;
  $("dialog-confirm").classList.toggle("danger", danger);
  $("dialog-cancel").textContent = cancel;
  $("dialog-cancel").hidden = cancel === null;

  return new Promise((resolve) => {
    let answer = null;
    const submit = (event) => {
      event.preventDefault();
      const values = Object.entries(inputs).map(([name, input]) => [name, input.value.trim()]);
      answer = Object.fromEntries(values);
      dialog.close();
    };
    const dismiss = () => dialog.close();
    form.addEventListener("submit", submit);
    $("dialog-cancel").addEventListener("click", dismiss);
    dialog.addEventListener(
      "close",
      () => {
        form.removeEventListener("submit", submit);
        $("dialog-cancel").removeEventListener("click", dismiss);
        resolve(answer);
      },
      { once: true },
    );
    dialog.showModal();
    const first = Object.values(inputs)[0];
    if (first && !first.readOnly) first.select?.();
    (first ?? $("dialog-confirm")).focus();
  });
}

/** Run an action, tell how it went, and show the directory as it is now. */
async function act(work, success) {
  try {
    await work();
    notice(success);
  } catch (error) {
    fail(error);
  }
  await refresh();
}

// Actions

async function newFolder() {
  const answer = await ask({
    title: "New folder",
    fields: [{ name: "name", label: "Name" }],
    confirm: "Create",
  });
  if (!answer) return;
  const path = join(state.path, answer.name);
  await act(() => api.makeDirectory(path), `Created the folder ${path}.`);
}

async function rename(entry) {
  const answer = await ask({
    title: `Rename or move ${entry.name}`,
    text: "A new name renames it in this folder; a path starting with / moves it there.",
    fields: [{ name: "destination", label: "New name or path", value: entry.name }],
    confirm: "Rename",
  });
  if (!answer) return;
  const destination = answer.destination.startsWith("/")
    ? answer.destination
    : join(api.parentOf(entry.path), answer.destination);
  if (destination === entry.path) {
    notice(`${entry.path} keeps its name.`);
    return;
  }
  await act(() => api.move(entry.path, destination), `Moved ${entry.path} to ${destination}.`);
}

async function changeMode(entry) {
  const answer = await ask({
    title: `Mode of ${entry.name}`,
    fields: [
      {
        name: "mode",
        label: "Mode, in octal",
        value: entry.mode,
        pattern: "[0-7]{3,4}",
        inputmode: "numeric",
        describe: (text) => (isMode(text) ? symbolicMode(text) : "3 or 4 octal digits, like 0640"),
      },
    ],
    confirm: "Change",
  });
  if (!answer) return;
  const mode = answer.mode.padStart(4, "0");
  const told = `${entry.path} is now ${symbolicMode(mode)} (${mode}).`;
  await act(() => api.changeMode(entry.path, mode), told);
}

async function remove(entry) {
  const directory = entry.type === "directory";
  const answer = await ask({
    title: `Delete ${entry.name}?`,
    text: directory
      ? "The folder and everything in it will be deleted. This cannot be undone."
      : "The file will be deleted. This cannot be undone.",
    confirm: "Delete",
    danger: true,
  });
  if (!answer) return;
  await act(() => api.remove(entry.path, { recursive: directory }), `Deleted ${entry.path}.`);
}

async function download(entry) {
  notice(`Downloading ${entry.name}…`);
  try {
    // A plain link cannot carry the key: the bytes come with it, then leave as a blob: URL.
    const blob = await api.read(entry.path);
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: entry.name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    notice(`Downloaded ${entry.name} (${humanSize(blob.size)}).`);
  } catch (error) {
    fail(error);
  }
}

async function share(entry) {
  const answer = await ask({
    title: `Share ${entry.name}`,
    text: "A link that downloads this file once, without a key, until it expires.",
    fields: [
      {
        name: "expiry",
        label: "Expires after",
        value: "3600",
        options: [
          ["300", "5 minutes"],
          ["3600", "1 hour"],
          ["86400", "1 day"],
        ],
      },
    ],
    confirm: "Create link",
  });
  if (!answer) return;
  let link;
  try {
    link = await api.share(entry.path, Number(answer.expiry));
  } catch (error) {
    fail(error);
    return;
  }
  notice(`Created a single-use link to ${entry.path}.`);
  await ask({
    title: `Link to ${entry.name}`,
    text: `It works once, until ${localTime(link.expires_at)}.`,
    fields: [
      {
        name: "url",
        label: "Link",
        value: link.url,
        readonly: true,
        button: { label: "Copy", run: copy },
      },
    ],
    confirm: "Done",
    cancel: null,
  });
}

async function copy(input, said) {
  try {
    await navigator.clipboard.writeText(input.value);
    said.textContent = "Copied.";
  } catch {
    input.select();
    said.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
  }
}

// Uploads

function upload(files) {
  for (const file of files) send(state.path, file, false, null);
}

/** Upload file into directory with its own line and progress bar (replacing line). */
function send(directory, file, replace, line) {
  const path = join(directory, file.name);
  const bar = h("progress", { max: 100, value: 0, "aria-label": `Upload of ${file.name}` });
  const percent = h("span", { class: "percent" }, "0 %");
  const status = h("span", { class: "status" }, "uploading…");
  const name = h("span", { class: "name" }, path);
  const item = h("li", { "data-name": file.name }, name, bar, percent, status);
  if (line) line.replaceWith(item);
  else $("uploads").append(item);
  const onProgress = (fraction) => {
    const value = Math.round(fraction * 100);
    bar.value = value;
    percent.textContent = `${value} %`;
  };
  api
    .upload(path, file, { replace, onProgress })
    .then(() => {
      item.classList.add("done");
      status.textContent = "done";
      notice(`Uploaded ${path} (${humanSize(file.size)}).`);
      if (directory === state.path) refresh();
    })
    .catch((error) => {
      item.classList.add("failed");
      status.textContent = error.message;
      if (error.code === "FILE_ALREADY_EXISTS") {
        const again = () => send(directory, file, true, item);
        item.append(h("button", { type: "button", onclick: again }, `Replace ${file.name}`));
      }
      fail(error);
    });
}

function carriesFiles(event) {
  return event.dataTransfer?.types.includes("Files") ?? false;
}

function onDrop(event) {
  event.preventDefault();
  document.body.classList.remove("dropping");
  if ($("browser").hidden) return;
  const items = [...event.dataTransfer.items];
  const folders = items.filter((item) => item.webkitGetAsEntry?.()?.isDirectory);
  if (folders.length > 0) {
    showError("Folders cannot be uploaded whole: drop or choose the files in them.");
    return;
  }
  upload([...event.dataTransfer.files]);
}

// Wiring

function start() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("error-close").addEventListener("click", () => {
    $("error").hidden = true;
  });
  $("new-folder").addEventListener("click", newFolder);
  $("upload").addEventListener("click", () => $("upload-input").click());
  $("upload-input").addEventListener("change", (event) => {
    upload([...event.target.files]);
    event.target.value = "";
  });
  $("more").addEventListener("click", () => loadPage(state.generation, state.cursor));
  $("filter").addEventListener("input", (event) => {
    state.filter = event.target.value;
    render();
  });
  for (const button of document.querySelectorAll("[data-sort]")) {
    button.addEventListener("click", () => {
      const key = button.dataset.sort;
      state.sort = { key, ascending: state.sort.key === key ? !state.sort.ascending : true };
      render();
    });
  }
  document.addEventListener("dragover", (event) => {
    if (!carriesFiles(event)) return;
    // Taken even when signed out: a file dropped on the page must not replace it.
    event.preventDefault();
    document.body.classList.toggle("dropping", !$("browser").hidden);
  });
  document.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) document.body.classList.remove("dropping");
  });
  document.addEventListener("drop", onDrop);
  window.addEventListener("hashchange", () => {
    if (api.session.key) open(pathFromHash());
  });
  if (api.session.key) showBrowser();
  else showSignIn();
}

start();
