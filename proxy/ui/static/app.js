// The memory browser over /v1/memories. The key lives in sessionStorage and travels only as a Bearer header.
// Memories are user data: every text is put in with textContent / append(string), never as markup.
"use strict";

(() => {
  const STORAGE = { key: "memproxy.key", user: "memproxy.user", tenant: "memproxy.tenant" };
  const SEARCH_TOP_K = 20;
  const GRAPH_LIMIT = 200;
  const $ = (id) => document.getElementById(id);

  const state = {
    cursors: [null], // cursor of each page seen so far; the last is the current page's
    nextCursor: null,
    query: null, // set while search results are shown
    graph: null,
  };

  // --- DOM -------------------------------------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  function date(value) {
    if (!value) return "—";
    const moment = new Date(value);
    if (Number.isNaN(moment.getTime())) return String(value);
    return `${moment.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  }

  function count(n, one, many) {
    return `${n} ${n === 1 ? one : many}`;
  }

  function showError(error) {
    const box = $("error");
    box.replaceChildren(el("strong", {}, "Error: "), errorText(error));
    box.hidden = false;
  }

  function errorText(error) {
    if (error instanceof ApiError) {
      const detail = error.body && error.body.error;
      if (detail && typeof detail.message === "string") {
        const code = detail.code ? ` (${detail.code})` : "";
        return `${error.status} ${detail.type || "error"}${code}: ${detail.message}`;
      }
      return `HTTP ${error.status} from the proxy.`;
    }
    return `Cannot reach the proxy (${error.message}).`;
  }

  function notify(text) {
    $("error").hidden = true;
    const box = $("notice");
    box.textContent = text;
    box.hidden = false;
  }

  function clearMessages() {
    $("error").hidden = true;
    $("notice").hidden = true;
  }

  // --- the API ---------------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      super(`HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  // `path` below /v1/memories; the user and tenant of the sign-in go as ?user= / ?tenant= on every call.
  async function api(method, path, { params = {}, body } = {}) {
    const url = new URL(`v1/memories${path}`, document.baseURI);
    const scope = { user: sessionStorage.getItem(STORAGE.user), tenant: sessionStorage.getItem(STORAGE.tenant) };
    for (const [name, value] of Object.entries({ ...scope, ...params })) {
      if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, String(value));
    }
    const headers = { Authorization: `Bearer ${sessionStorage.getItem(STORAGE.key)}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit",
    });
    let payload = null;
    try {
      payload = await response.json();
    } catch {
      payload = null;
    }
    if (!response.ok) throw new ApiError(response.status, payload);
    return payload;
  }

  // Runs an action; an error is shown to the user instead of thrown. Returns whether it succeeded.
  async function attempt(action) {
    try {
      await action();
      return true;
    } catch (error) {
      showError(error);
      if (error instanceof ApiError && error.status === 401) signOut({ keepMessage: true });
      return false;
    }
  }

  // --- sign-in ---------------------------------------------------------------------------------------------

  async function connect(event) {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    sessionStorage.setItem(STORAGE.key, key);
    setOrRemove(STORAGE.user, $("user").value.trim());
    setOrRemove(STORAGE.tenant, $("tenant").value.trim());
    $("api-key").value = "";
    await start();
  }

  function setOrRemove(name, value) {
    if (value) sessionStorage.setItem(name, value);
    else sessionStorage.removeItem(name);
  }

  async function start() {
    clearMessages();
    state.cursors = [null];
    state.query = null;
    state.graph = null;
    $("detail").replaceChildren(placeholder("Select a memory to see its details, provenance and history."));
    if (!(await attempt(loadPage))) {
      signOut({ keepMessage: true }); // a sign-in that did not work keeps nothing
      return;
    }
    const user = sessionStorage.getItem(STORAGE.user);
    const tenant = sessionStorage.getItem(STORAGE.tenant);
    const whose = user ? `user ${user}` : "the key's own user";
    $("scope-label").textContent = tenant ? `tenant ${tenant} · ${whose}` : whose;
    $("app").hidden = false;
    $("disconnect").hidden = false;
    showView("memories");
  }

  function signOut({ keepMessage = false } = {}) {
    for (const name of Object.values(STORAGE)) sessionStorage.removeItem(name);
    $("app").hidden = true;
    $("disconnect").hidden = true;
    $("memory-list").replaceChildren();
    $("detail").replaceChildren();
    $("graph-canvas").replaceChildren();
    if (!keepMessage) clearMessages();
  }

  function placeholder(text) {
    return el("p", { class: "placeholder" }, text);
  }

  // --- the list and search ---------------------------------------------------------------------------------

  async function loadPage() {
    const cursor = state.cursors[state.cursors.length - 1];
    const page = await api("GET", "", {
      params: {
        limit: $("page-size").value,
        cursor,
        kind: $("kind-filter").value,
        include_inactive: $("include-inactive").checked ? "true" : null,
      },
    });
    state.nextCursor = page.next_cursor;
    state.query = null;
    renderList(page.data, `${count(page.data.length, "memory", "memories")} on this page`);
    $("pager").hidden = false;
    $("clear-search").hidden = true;
    $("prev-page").disabled = state.cursors.length <= 1;
    $("next-page").disabled = !state.nextCursor;
    $("page-label").textContent = `Page ${state.cursors.length}`;
  }

  async function search(event) {
    event.preventDefault();
    const query = $("search-query").value.trim();
    if (!query) return;
    clearMessages();
    await attempt(async () => {
      const results = await api("POST", "/search", { body: { query, top_k: SEARCH_TOP_K } });
      state.query = query;
      renderList(results.data, `${count(results.data.length, "result", "results")} for “${query}”`);
      $("pager").hidden = true;
      $("clear-search").hidden = false;
    });
  }

  async function clearSearch() {
    $("search-query").value = "";
    state.cursors = [null];
    clearMessages();
    await attempt(loadPage);
  }

  // Reloads what is shown (the same page, or the same search) after a change.
  async function refresh() {
    if (state.query) {
      const results = await api("POST", "/search", { body: { query: state.query, top_k: SEARCH_TOP_K } });
      renderList(results.data, `${count(results.data.length, "result", "results")} for “${state.query}”`);
    } else {
      await loadPage();
    }
    if (state.graph) await loadGraph();
  }

  function renderList(memories, caption) {
    $("list-caption").textContent = caption;
    const items = memories.map((memory) =>
      el("li", {
        class: `memory${memory.active ? "" : " inactive"}`, dataset: { id: memory.id }, tabindex: 0,
        onclick: () => attempt(() => selectMemory(memory.id)),
        onkeydown: (event) => { if (event.key === "Enter") attempt(() => selectMemory(memory.id)); },
      },
      el("p", { class: "text" }, memory.text),
      el("p", { class: "meta" },
        el("span", { class: `badge kind-${memory.kind}` }, memory.kind),
        el("span", {}, `importance ${memory.importance.toFixed(2)}`),
        el("span", {}, `created ${date(memory.created_at)}`),
        memory.event_time && el("span", {}, `event ${date(memory.event_time)}`),
        el("span", {}, `used ${memory.use_count}×`),
        memory.pinned && el("span", { class: "badge pinned" }, "pinned"),
        memory.core && !memory.pinned && el("span", { class: "badge core" }, "core"),
        !memory.active && el("span", { class: "badge inactive" }, memory.superseded_by ? "superseded" : "expired"),
        memory.score !== undefined && el("span", { class: "score" }, `score ${memory.score.toFixed(3)}`),
      )));
    $("memory-list").replaceChildren(...(items.length ? items : [el("li", { class: "empty" }, "No memories.")]));
  }

  // --- one memory: details, edit, delete, history ----------------------------------------------------------

  async function selectMemory(id, container = $("detail")) {
    const memory = await api("GET", `/${encodeURIComponent(id)}`);
    clearMessages();
    renderDetail(memory, container);
    document.querySelectorAll("#memory-list li.selected").forEach((li) => li.classList.remove("selected"));
    const item = [...document.querySelectorAll("#memory-list li.memory")].find((li) => li.dataset.id === memory.id);
    if (item) item.classList.add("selected");
  }

  function button(className, label, onclick) {
    return el("button", { type: "button", class: className, onclick }, label);
  }

  function field(name, ...value) {
    return [el("dt", {}, name), el("dd", {}, ...value)];
  }

  function status(memory) {
    if (memory.active) return "active";
    return memory.superseded_by ? "superseded" : "expired";
  }

  function renderDetail(memory, container) {
    const provenance = memory.source_ids.length
      ? el("ul", { class: "sources" }, memory.source_ids.map((source) => el("li", {}, el("code", {}, source))))
      : "none recorded (added through the API)";
    const newer = memory.superseded_by
      ? button("link", memory.superseded_by, () => attempt(() => selectMemory(memory.superseded_by, container)))
      : "—";
    const metadata = Object.keys(memory.metadata).length ? el("code", {}, JSON.stringify(memory.metadata)) : "—";
    container.replaceChildren(
      el("div", { class: "memory-detail", dataset: { id: memory.id } },
        el("h2", {}, "Memory"),
        el("p", { class: "text" }, memory.text),
        el("dl", {},
          field("id", el("code", {}, memory.id)),
          field("user", memory.user),
          field("kind", memory.kind),
          field("importance", memory.importance.toFixed(2)),
          field("status", status(memory)),
          field("core memory", memory.pinned ? "pinned" : memory.core ? "yes" : "no"),
          field("created", date(memory.created_at)),
          field("event time", date(memory.event_time)),
          field("last used", date(memory.last_used_at)),
          field("use count", String(memory.use_count)),
          field("expires", date(memory.expires_at)),
          field("provenance", provenance),
          field("newer version", newer),
          field("entities", memory.entities.length ? memory.entities.join(", ") : "—"),
          field("metadata", metadata),
        ),
        editForm(memory, container),
        el("div", { class: "actions" },
          button("history", "History", () => attempt(() => showHistory(memory, container))),
          button("delete danger", "Delete", () => deleteMemory(memory, container)),
        ),
        el("section", { class: "history-view" }),
      ),
    );
  }

  function editForm(memory, container) {
    const text = el("textarea", { class: "edit-text", rows: 3, maxlength: 20000 });
    text.value = memory.text;
    const importance = el("input", { class: "edit-importance", type: "number", min: 0, max: 1, step: 0.05 });
    importance.value = String(memory.importance);
    const pinned = el("input", { class: "edit-pinned", type: "checkbox" });
    pinned.checked = memory.pinned;
    const form = el("form", { class: "edit-form" },
      el("h3", {}, "Edit"),
      el("label", {}, "Text (a new text is stored as a new version)", text),
      el("div", { class: "row" },
        el("label", {}, "Importance ", importance),
        el("label", {}, pinned, " pinned in core memory"),
        el("button", { type: "submit", class: "save" }, "Save"),
      ),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const values = { text: text.value, importance: importance.value, pinned: pinned.checked };
      attempt(() => saveEdit(memory, values, container));
    });
    return form;
  }

  async function saveEdit(memory, values, container) {
    const change = {};
    if (values.text.trim() && values.text.trim() !== memory.text) change.text = values.text.trim();
    const importance = Number(values.importance);
    if (values.importance !== "" && importance !== memory.importance) change.importance = importance;
    if (values.pinned !== memory.pinned) change.pinned = values.pinned;
    if (!Object.keys(change).length) {
      notify("Nothing changed.");
      return;
    }
    const saved = await api("PATCH", `/${encodeURIComponent(memory.id)}`, { body: change });
    await refresh();
    await selectMemory(saved.id, container);
    notify(saved.id === memory.id ? "Saved." : "Saved as a new version; the old one is kept in the history.");
  }

  function confirmDialog(text) {
    const dialog = $("confirm-dialog");
    $("confirm-text").textContent = text;
    dialog.returnValue = "";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.showModal();
    });
  }

  async function deleteMemory(memory, container) {
    const snippet = memory.text.length > 80 ? `${memory.text.slice(0, 79)}…` : memory.text;
    if (!(await confirmDialog(`Delete this memory for good?\n\n“${snippet}”`))) return;
    await attempt(async () => {
      await api("DELETE", `/${encodeURIComponent(memory.id)}`);
      container.replaceChildren(placeholder("Deleted."));
      await refresh();
      notify("Memory deleted.");
    });
  }

  async function showHistory(memory, container) {
    const history = await api("GET", `/${encodeURIComponent(memory.id)}/history`);
    const view = container.querySelector(".history-view");
    view.replaceChildren(
      el("h3", {}, `History (${count(history.data.length, "version", "versions")}, oldest first)`),
      el("ol", { class: "history" }, history.data.map((version) =>
        el("li", {
          class: `version${version.id === memory.id ? " current" : ""}`, dataset: { id: version.id },
          onclick: () => attempt(() => selectMemory(version.id, container)),
        },
        el("p", { class: "text" }, version.text),
        el("p", { class: "meta" },
          `${date(version.created_at)} · ${status(version)}${version.id === memory.id ? " · shown" : ""}`),
        ))),
    );
  }

  // --- the graph -------------------------------------------------------------------------------------------

  async function loadGraph() {
    const graph = await api("GET", "/graph", { params: { limit: GRAPH_LIMIT } });
    state.graph = graph;
    const memories = graph.nodes.filter((n) => n.type === "memory").length;
    const entities = graph.nodes.length - memories;
    const shown = `${count(memories, "memory", "memories")}, ${count(entities, "entity", "entities")}, `
      + `${count(graph.edges.length, "edge", "edges")}`;
    $("graph-caption").textContent = graph.truncated ? `${shown} (the newest ${GRAPH_LIMIT} memories)` : shown;
    window.MemoryGraph.render($("graph-canvas"), graph, (node) => attempt(() => showNode(node)));
  }

  async function showNode(node) {
    const container = $("graph-detail");
    if (node.type === "memory") {
      await selectMemory(node.id, container);
      return;
    }
    const mentioning = state.graph.edges.filter((e) => e.target === node.id || e.source === node.id);
    const byId = new Map(state.graph.nodes.map((n) => [n.id, n]));
    container.replaceChildren(
      el("div", { class: "entity-detail", dataset: { id: node.id } },
        el("h2", {}, "Entity"),
        el("p", { class: "text" }, node.label),
        el("dl", {}, field("id", el("code", {}, node.id)), field("type", node.kind || "—")),
        el("h3", {}, "Memories that mention it"),
        el("ul", { class: "mentions" }, mentioning.map((edge) => {
          const other = byId.get(edge.source === node.id ? edge.target : edge.source);
          return el("li", {},
            button("link", other.label, () => attempt(() => selectMemory(other.id, container))));
        })),
      ),
    );
  }

  function showView(name) {
    for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.view === name);
    $("view-memories").hidden = name !== "memories";
    $("view-graph").hidden = name !== "graph";
    if (name === "graph") attempt(loadGraph);
  }

  // --- wiring ----------------------------------------------------------------------------------------------

  function init() {
    $("connect-form").addEventListener("submit", connect);
    $("disconnect").addEventListener("click", () => signOut());
    $("search-form").addEventListener("submit", search);
    $("clear-search").addEventListener("click", clearSearch);
    $("prev-page").addEventListener("click", () => {
      state.cursors.pop();
      attempt(loadPage);
    });
    $("next-page").addEventListener("click", () => {
      state.cursors.push(state.nextCursor);
      attempt(loadPage);
    });
    for (const id of ["kind-filter", "include-inactive", "page-size"]) {
      $(id).addEventListener("change", () => {
        state.cursors = [null];
        attempt(loadPage);
      });
    }
    for (const tab of document.querySelectorAll(".tab")) {
      tab.addEventListener("click", () => showView(tab.dataset.view));
    }
    $("graph-reload").addEventListener("click", () => attempt(loadGraph));
    window.MemoryGraph.legend($("graph-legend"));
    $("user").value = sessionStorage.getItem(STORAGE.user) || "";
    $("tenant").value = sessionStorage.getItem(STORAGE.tenant) || "";
    document.body.dataset.ready = "true";
    if (sessionStorage.getItem(STORAGE.key)) start();
  }

  init();
})();
