// Crust operator UI: a hash-routed single page over the ordinary JSON API.
// The `jwt` cookie authenticates every call; mutations send JSON (the API
// refuses cookie-authenticated writes without it, against CSRF). All data is
// put into the page with textContent, never parsed as HTML.

const STATUSES = ["queued", "running", "waiting", "ok", "error", "cancelled"];
const FINISHED = new Set(["ok", "error", "cancelled"]);
const PER_PAGE = 25;

const main = document.getElementById("main");
const flashBox = document.getElementById("flash");
let view = { stop() {} };

// ---------- small helpers ----------

/** Creates an element: h("a", {href: "#"}, "text", child…). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Calls the API; a 401 sends the browser to the sign-in page. */
async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body ?? {});
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    window.location.assign("/ui/login");
    throw new Error("signed out");
  }
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  const message = data?.error?.message ?? `HTTP ${response.status}`;
  return { ok: response.ok, status: response.status, data: data?.response ?? data, message };
}

function badge(status) {
  return h("span", { class: `status s-${status}` }, status);
}

function when(ts) {
  if (!ts) return "—";
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return ts;
  return d.toISOString().replace("T", " ").slice(0, 19);
}

function duration(from, to) {
  if (!from) return "";
  const ms = (to ? new Date(to) : new Date()) - new Date(from);
  if (ms < 1000) return `${Math.max(ms, 0)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

function json(value) {
  return h("pre", { class: "json" }, value === undefined || value === null ? "—" : JSON.stringify(value, null, 2));
}

// A message survives the one navigation it announces, then goes.
let flashKeep = false;

/** Shows a message; `navigating`: it announces the navigation that follows. */
function flash(message, bad = false, navigating = false) {
  flashKeep = navigating;
  flashBox.textContent = message;
  flashBox.classList.toggle("bad", bad);
  flashBox.hidden = false;
}

function clearFlash() {
  flashBox.hidden = true;
  flashBox.textContent = "";
}

function failure(what, result) {
  return h("p", { class: "error-text", role: "alert" }, `${what}: ${result.message}`);
}

/** Replaces an element's children, skipping absent ones. */
function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== undefined && c !== null && c !== false));
}

function setMain(...children) {
  fill(main, ...children);
}

// ---------- routing ----------

function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(query) };
}

let lastSection = null;

async function route() {
  view.stop();
  view = { stop() {} };
  if (!flashKeep) clearFlash();
  flashKeep = false;
  const { parts, params } = parseHash();
  const section = parts[0] || "jobs";
  for (const link of document.querySelectorAll("[data-nav]")) {
    const current = link.dataset.nav === section || (section === "job" && link.dataset.nav === "jobs");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const pages = { jobs: jobsPage, job: jobPage, workflows: workflowsPage, workers: workersPage, queues: queuesPage, charts: chartsPage };
  const page = pages[section] ?? jobsPage;
  const titles = { jobs: "Jobs", job: `Job ${parts[1] ?? ""}`, workflows: "Workflows", workers: "Workers", queues: "Queues", charts: "Charts" };
  document.title = `${titles[section] ?? "Jobs"} · Crust`;
  const moved = lastSection !== null && lastSection !== `${section}/${parts[1] ?? ""}`;
  lastSection = `${section}/${parts[1] ?? ""}`;
  await page(parts, params);
  // Keyboard and screen-reader users land on the new content.
  if (moved) { main.focus({ preventScroll: true }); window.scrollTo(0, 0); }
}

function go(hash) {
  if (window.location.hash === hash) route();
  else window.location.hash = hash;
}

// ---------- jobs ----------

function jobsHash(filter, status, page) {
  const q = new URLSearchParams();
  if (filter) q.set("filter", filter);
  if (status) q.set("status", status);
  if (page) q.set("page", String(page));
  const s = q.toString();
  return `#/jobs${s ? `?${s}` : ""}`;
}

function jobQuery(filter, status, page, perPage) {
  const q = new URLSearchParams();
  if (filter) q.set("filter", filter);
  if (status) q.set("status", status);
  q.set("page", String(page));
  q.set("perPage", String(perPage));
  return `/job/?${q}`;
}

async function jobsPage(_parts, params) {
  const filter = params.get("filter") ?? "";
  const status = params.get("status") ?? "";
  const page = Math.max(0, Number.parseInt(params.get("page") ?? "0", 10) || 0);

  const input = h("input", {
    id: "filter", type: "search", name: "filter", value: filter,
    placeholder: "status = 'error' AND createdAt > NOW() - INTERVAL 1 DAY",
    "aria-describedby": "filter-help filter-error", spellcheck: "false", autocomplete: "off",
  });
  const error = h("p", { id: "filter-error", class: "field-error", role: "alert" });
  const form = h("form", { class: "filter", role: "search", onsubmit(event) {
      event.preventDefault();
      clearFlash();
      go(jobsHash(input.value.trim(), status, 0));
    } },
    h("label", { for: "filter" }, "Filter"), input,
    h("button", { type: "submit", id: "filter-apply", class: "primary" }, "Apply"),
    filter || status ? h("button", { type: "button", id: "filter-clear", onclick: () => go("#/jobs") }, "Clear") : null);
  const help = h("p", { id: "filter-help", class: "help" },
    "Query language over jobID, workflowID, status, attempt, queue, key, worker, error, createdAt, startAt, startedAt, finishedAt, parentJobID, parameters.<name>.");
  const counts = h("ul", { class: "counts", "aria-label": "Jobs by status" });
  const body = h("div", { id: "jobs-body" }, h("p", { class: "muted" }, "Loading…"));
  setMain(h("h1", {}, "Jobs"), h("div", { class: "card" }, form, error, help, counts), body);

  const [list, workflows] = await Promise.all([api("GET", jobQuery(filter, status, page, PER_PAGE)), api("GET", "/workflow/")]);
  const names = new Map(workflows.ok ? workflows.data.map((w) => [w.workflowID, w.name]) : []);
  if (!list.ok) {
    error.textContent = list.message;
    input.setAttribute("aria-invalid", "true");
    body.replaceChildren();
    input.focus();
    return;
  }
  input.setAttribute("aria-invalid", "false");

  // Counts by status, under the same filter: one cheap call per status.
  const totals = await Promise.all(STATUSES.map((s) => api("GET", jobQuery(filter, s, 0, 1))));
  const all = h("button", { type: "button", "aria-pressed": String(!status), onclick: () => go(jobsHash(filter, "", 0)) }, "all");
  fill(counts, h("li", {}, all), ...STATUSES.map((s, i) => h("li", {},
    h("button", { type: "button", "data-count": s, "aria-pressed": String(status === s),
      "aria-label": `${s}: ${totals[i].ok ? totals[i].data.meta.count : "?"} jobs`, onclick: () => go(jobsHash(filter, s, 0)) },
      badge(s), h("span", { class: "count" }, totals[i].ok ? totals[i].data.meta.count : "?")))));

  const { jobs, meta } = list.data;
  const selected = new Set();
  const cancelButton = h("button", { type: "button", id: "bulk-cancel", class: "danger", disabled: true, onclick: () => bulk("cancel") }, "Cancel selected");
  const rerunButton = h("button", { type: "button", id: "bulk-rerun", disabled: true, onclick: () => bulk("rerun") }, "Rerun selected");
  const selectedText = h("span", { class: "muted", "aria-live": "polite" }, "");
  const boxes = [];
  function updateSelection() {
    cancelButton.disabled = rerunButton.disabled = selected.size === 0;
    selectedText.textContent = selected.size ? `${selected.size} selected` : "";
    allBox.checked = selected.size > 0 && selected.size === jobs.length;
    allBox.indeterminate = selected.size > 0 && selected.size < jobs.length;
  }
  async function bulk(action) {
    const ids = [...selected];
    const result = await api("POST", `/job/${action}`, { filter: `jobID IN (${ids.join(", ")})` });
    if (!result.ok) { flash(`${action} failed: ${result.message}`, true); return; }
    const count = result.data?.count ?? 0;
    flash(action === "cancel" ? `Cancelled ${count} of ${ids.length} selected jobs.` : `Started ${count} reruns of ${ids.length} selected jobs.`, false, true);
    route();
  }
  const allBox = h("input", { type: "checkbox", id: "select-all", "aria-label": "Select all jobs on this page", onchange() {
    for (const box of boxes) { box.checked = allBox.checked; }
    selected.clear();
    if (allBox.checked) for (const job of jobs) selected.add(job.jobID);
    updateSelection();
  } });
  const rows = jobs.map((job) => {
    const box = h("input", { type: "checkbox", "aria-label": `Select job ${job.jobID}`, onchange() {
      if (box.checked) selected.add(job.jobID); else selected.delete(job.jobID);
      updateSelection();
    } });
    boxes.push(box);
    return h("tr", { "data-job": job.jobID },
      h("td", {}, box),
      h("td", {}, h("a", { href: `#/job/${job.jobID}` }, job.jobID)),
      h("td", {}, names.get(job.workflowID) ?? "", h("span", { class: "muted" }, ` #${job.workflowID}`)),
      h("td", { class: "job-status" }, badge(job.status)),
      h("td", { class: "num" }, job.attempt),
      h("td", {}, when(job.createdAt)),
      h("td", {}, duration(job.startedAt, job.finishedAt)),
      h("td", { class: "error-text" }, job.error ? job.error.slice(0, 120) : ""));
  });
  const pages = Math.max(1, Math.ceil(meta.count / PER_PAGE));
  const pager = h("div", { class: "toolbar" },
    h("button", { type: "button", id: "page-prev", disabled: page === 0, onclick: () => go(jobsHash(filter, status, page - 1)) }, "← Previous"),
    h("span", {}, `Page ${page + 1} of ${pages} · ${meta.count} jobs`),
    h("button", { type: "button", id: "page-next", disabled: page + 1 >= pages, onclick: () => go(jobsHash(filter, status, page + 1)) }, "Next →"));
  const table = h("table", { id: "jobs-table" },
    h("caption", { class: "skip" }, "Jobs"),
    h("thead", {}, h("tr", {}, h("th", {}, allBox), h("th", {}, "Job"), h("th", {}, "Workflow"), h("th", {}, "Status"),
      h("th", { class: "num" }, "Attempt"), h("th", {}, "Created (UTC)"), h("th", {}, "Took"), h("th", {}, "Error"))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: "8", class: "muted" }, "No jobs match."))));
  fill(body,
    h("div", { class: "toolbar" }, cancelButton, rerunButton, selectedText, h("span", { class: "spacer" }),
      h("button", { type: "button", id: "refresh", onclick: () => route() }, "Refresh")),
    table, pager);
  updateSelection();
}

// ---------- a job ----------

async function jobPage(parts) {
  const id = parts[1];
  const heading = h("h1", {}, `Job ${id}`);
  const actions = h("div", { class: "toolbar" });
  const details = h("div", { class: "card", id: "job-details" });
  const data = h("div", { class: "grid2", id: "job-data" });
  const steps = h("div", { class: "card", id: "job-steps" });
  const logs = h("ol", { id: "logs", class: "logs", "aria-label": "Log lines", "aria-live": "polite" });
  const logState = h("p", { class: "help", id: "log-state" }, "Connecting…");
  setMain(heading, actions,
    h("div", { class: "grid2" },
      h("section", { "aria-labelledby": "steps-h" }, h("h2", { id: "steps-h" }, "Steps"), steps, details),
      h("section", { "aria-labelledby": "logs-h" }, h("h2", { id: "logs-h" }, "Logs"), logState, logs)),
    data);

  let job = null;
  let stopped = false;
  let timer = null;
  let source = null;
  let lastSeq = -1;
  view = { stop() { stopped = true; clearTimeout(timer); source?.close(); } };

  function appendLog(entry) {
    if (entry.seq <= lastSeq) return;
    lastSeq = entry.seq;
    const level = entry.level ?? "info";
    logs.append(h("li", { "data-seq": entry.seq },
      h("span", { class: "ts" }, when(entry.ts).slice(11)), " ",
      h("span", { class: `lvl-${level}` }, level.toUpperCase().padEnd(5)), " ",
      entry.task ? h("span", { class: "task" }, `[${entry.task}] `) : "",
      entry.message ?? "",
      entry.data !== undefined && entry.data !== null ? ` ${JSON.stringify(entry.data)}` : ""));
    logs.scrollTop = logs.scrollHeight;
  }

  async function refresh() {
    const [jobResult, stepResult] = await Promise.all([api("GET", `/job/${id}`), api("GET", `/job/${id}/steps`)]);
    if (stopped) return;
    if (!jobResult.ok) { setMain(heading, failure(`Job ${id}`, jobResult)); view.stop(); return; }
    job = jobResult.data;
    renderJob(job);
    renderSteps(job, stepResult.ok ? stepResult.data.steps : []);
    if (!FINISHED.has(job.status)) timer = setTimeout(refresh, 1000);
  }

  function renderJob(job) {
    fill(heading, `Job ${job.jobID} `, h("span", { id: "job-status" }, badge(job.status)));
    const finished = FINISHED.has(job.status);
    fill(actions, 
      !finished ? h("button", { type: "button", id: "job-cancel", class: "danger", onclick: cancel }, "Cancel job") : null,
      finished ? h("button", { type: "button", id: "job-rerun", class: "primary", onclick: rerun }, "Rerun job") : null,
      h("a", { href: jobsHash(`workflowID = ${job.workflowID}`, "", 0) }, "Other jobs of this workflow"));
    const props = [
      ["Workflow", `${job.workflowID} (version ${job.workflowVersion})`],
      ["Attempt", job.attempt],
      ["Created", when(job.createdAt)],
      ["Start at", when(job.startAt)],
      ["Started", when(job.startedAt)],
      ["Finished", when(job.finishedAt)],
      ["Took", duration(job.startedAt, job.finishedAt) || "—"],
    ];
    const dl = h("dl", { class: "props" });
    for (const [name, value] of props) dl.append(h("dt", {}, name), h("dd", {}, value));
    if (job.parentJobID) dl.append(h("dt", {}, "Parent"), h("dd", {}, h("a", { href: `#/job/${job.parentJobID}` }, job.parentJobID)));
    if (job.rerunOf) dl.append(h("dt", {}, "Rerun of"), h("dd", {}, h("a", { href: `#/job/${job.rerunOf}` }, job.rerunOf)));
    if (job.key) dl.append(h("dt", {}, "Key"), h("dd", { class: "mono" }, job.key));
    if (job.traceID) dl.append(h("dt", {}, "Trace"), h("dd", { class: "mono" }, job.traceURL ? h("a", { href: job.traceURL }, job.traceID) : job.traceID));
    fill(details,
      job.error ? h("p", { class: "error-text job-error", id: "job-error" }, h("strong", {}, "Error: "), job.error) : null,
      dl);
    fill(data,
      h("section", {}, h("h2", {}, "Parameters"), json(job.parameters)),
      h("section", {}, h("h2", {}, "Outputs"), json(job.outputs)));
  }

  function renderSteps(job, list) {
    if (!list.length) { steps.replaceChildren(h("p", { class: "muted" }, "No steps yet.")); return; }
    const t0 = new Date(job.startedAt ?? job.createdAt).getTime();
    const starts = list.filter((s) => s.startedAt).map((s) => new Date(s.startedAt).getTime());
    const begin = Math.min(t0, ...starts);
    const end = Math.max(begin + 1, job.finishedAt ? new Date(job.finishedAt).getTime() : Date.now(),
      ...list.filter((s) => s.finishedAt).map((s) => new Date(s.finishedAt).getTime()));
    const span = end - begin;
    steps.replaceChildren(h("ol", { class: "timeline" }, list.map((step) => {
      let bar = h("div", { class: "bar", "aria-hidden": "true" });
      if (step.startedAt) {
        const left = ((new Date(step.startedAt).getTime() - begin) / span) * 100;
        const stop = step.finishedAt ? new Date(step.finishedAt).getTime() : Date.now();
        const width = Math.max(((stop - new Date(step.startedAt).getTime()) / span) * 100, 0.5);
        bar = h("div", { class: "bar", "aria-hidden": "true" }, h("span", { class: step.status, style: null }));
        const fill = bar.firstChild;
        fill.style.left = `${Math.min(left, 99.5)}%`;
        fill.style.width = `${Math.min(width, 100 - Math.min(left, 99.5))}%`;
      }
      const name = step.index !== undefined && step.index !== null ? `${step.task}[${step.index}]` : step.task;
      return h("li", { "data-step": name },
        h("span", { class: "mono" }, name),
        badge(step.status),
        bar,
        h("span", { class: "muted" },
          step.startedAt ? `${duration(step.startedAt, step.finishedAt)}${step.tries > 1 ? ` · ${step.tries} tries` : ""}` : "not started"),
        step.error ? h("span", { class: "error-text step-error" }, step.error) : null);
    })));
  }

  async function cancel() {
    const result = await api("DELETE", `/job/${id}`);
    if (!result.ok) { flash(`Cancel failed: ${result.message}`, true); return; }
    flash(`Cancelling job ${id}…`);
    clearTimeout(timer);
    refresh();
  }

  async function rerun() {
    const result = await api("POST", `/job/${id}/rerun`, {});
    if (!result.ok) { flash(`Rerun failed: ${result.message}`, true); return; }
    flash(`Job ${id} rerun as job ${result.data.jobID}.`, false, true);
    go(`#/job/${result.data.jobID}`);
  }

  // Live logs: the SSE stream; if the API cannot stream, poll the log pages.
  function poll() {
    if (stopped) return;
    logState.textContent = "Following (polling every second).";
    const page = Math.floor((lastSeq + 1) / 1000);
    api("GET", `/job/${id}/logs?page=${Math.max(page - 1, 0)}&perPage=1000`)
      .then(async (first) => {
        const second = await api("GET", `/job/${id}/logs?page=${page}&perPage=1000`);
        for (const r of [first, second]) if (r.ok) for (const entry of r.data.logs) appendLog(entry);
        if (stopped) return;
        if (job && FINISHED.has(job.status)) { logState.textContent = `Job ${job.status}; log complete.`; return; }
        timer = setTimeout(poll, 1000);
      });
  }
  if (window.EventSource) {
    source = new EventSource(`/job/${id}/logs?follow=true`);
    source.addEventListener("open", () => { if (!stopped) logState.textContent = "Following live."; });
    source.addEventListener("log", (event) => { appendLog(JSON.parse(event.data)); });
    source.addEventListener("status", (event) => {
      source.close();
      logState.textContent = `Job ${JSON.parse(event.data).status ?? "finished"}; log complete.`;
      clearTimeout(timer);
      refresh();
    });
    source.addEventListener("error", () => {
      // A refused stream (not text/event-stream) closes for good: poll instead.
      if (source.readyState === EventSource.CLOSED && !stopped) { source = null; poll(); }
    });
  } else {
    poll();
  }
  await refresh();
}

// ---------- workflows ----------

async function workflowsPage() {
  setMain(h("h1", {}, "Workflows"), h("p", { class: "muted" }, "Loading…"));
  const list = await api("GET", "/workflow/");
  if (!list.ok) { setMain(h("h1", {}, "Workflows"), failure("Workflows", list)); return; }
  const workflows = list.data;
  const recent = await Promise.all(workflows.map((w) => api("GET", `/job/?workflowID=${w.workflowID}&perPage=8`)));
  async function act(workflow, action) {
    const result = action === "run"
      ? await api("POST", "/job/", { workflowID: workflow.workflowID })
      : await api("POST", `/workflow/${workflow.workflowID}/${action}`, {});
    if (!result.ok) { flash(`${action} ${workflow.name}: ${result.message}`, true); return; }
    flash(action === "run" ? `Started job ${result.data.jobID} of ${workflow.name}.`
      : `${workflow.name} ${action === "pause" ? "paused" : "resumed"}.`, false, true);
    route();
  }
  const rows = workflows.map((w, i) => h("tr", { "data-workflow": w.workflowID },
    h("td", {}, h("strong", {}, w.name), h("div", { class: "muted" }, `ID ${w.workflowID} · version ${w.version}`)),
    h("td", {}, w.paused ? badge("paused") : h("span", { class: "muted" }, "active")),
    h("td", { class: "mono" }, w.schedule ?? "—"),
    h("td", {}, h("div", { class: "runs" }, recent[i].ok && recent[i].data.jobs.length
      ? recent[i].data.jobs.map((job) => h("a", { href: `#/job/${job.jobID}`, "aria-label": `job ${job.jobID} ${job.status}`, title: `job ${job.jobID}` }, badge(job.status)))
      : h("span", { class: "muted" }, "no runs")),
      h("a", { href: jobsHash(`workflowID = ${w.workflowID}`, "", 0) }, "all runs")),
    h("td", {}, h("div", { class: "toolbar" },
      h("button", { type: "button", class: "primary", "aria-label": `Run ${w.name} now`, onclick: () => act(w, "run") }, "Run now"),
      w.paused
        ? h("button", { type: "button", "aria-label": `Resume ${w.name}`, onclick: () => act(w, "resume") }, "Resume")
        : h("button", { type: "button", "aria-label": `Pause ${w.name}`, onclick: () => act(w, "pause") }, "Pause")))));
  setMain(h("h1", {}, "Workflows"), h("table", { id: "workflows-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "Workflow"), h("th", {}, "State"), h("th", {}, "Schedule"), h("th", {}, "Recent runs (newest first)"), h("th", {}, "Actions"))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No workflows.")))));
}

// ---------- workers, queues, charts ----------

async function tablePage(title, path, columns, empty) {
  setMain(h("h1", {}, title), h("p", { class: "muted" }, "Loading…"));
  const list = await api("GET", path);
  if (!list.ok) { setMain(h("h1", {}, title), failure(title, list)); return; }
  const rows = list.data.map((item) => h("tr", {}, columns.map(([, render, cls]) => h("td", { class: cls }, render(item)))));
  setMain(h("h1", {}, title, h("button", { type: "button", id: "refresh", onclick: () => route() }, "Refresh")),
    h("table", { id: `${title.toLowerCase()}-table` },
      h("thead", {}, h("tr", {}, columns.map(([name, , cls]) => h("th", { class: cls }, name)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: String(columns.length), class: "muted" }, empty)))));
}

function workersPage() {
  return tablePage("Workers", "/worker/", [
    ["Name", (w) => h("span", { class: "mono" }, w.name)],
    ["Queues", (w) => (w.queues ?? []).join(", ")],
    ["Running", (w) => `${w.running} of ${w.concurrency}`, "num"],
    ["Started (UTC)", (w) => when(w.startedAt)],
    ["Last seen (UTC)", (w) => when(w.lastSeenAt)],
  ], "No live workers.");
}

function queuesPage() {
  return tablePage("Queues", "/queue/", [
    ["Queue", (q) => h("span", { class: "mono" }, q.name)],
    ["Ready", (q) => q.ready, "num"],
    ["Running", (q) => q.running, "num"],
    ["Waiting", (q) => q.waiting, "num"],
    ["Delayed", (q) => q.delayed, "num"],
    ["Consumers", (q) => q.consumers, "num"],
    ["Oldest ready", (q) => (q.oldestReadyAgeSeconds ? `${q.oldestReadyAgeSeconds} s` : "—"), "num"],
  ], "No queues.");
}

async function chartsPage() {
  setMain(h("h1", {}, "Charts"), h("p", { class: "muted" }, "Loading…"));
  const list = await api("GET", "/chart/");
  if (!list.ok) { setMain(h("h1", {}, "Charts"), failure("Charts", list)); return; }
  const figures = list.data.map((chart) => h("figure", { class: "card", "data-chart": chart.chartID },
    h("img", { src: `/chart/${chart.chartID}/render.svg`, alt: `Chart ${chart.name}`, loading: "lazy" }),
    h("figcaption", {}, h("strong", {}, chart.name), " ", h("a", { href: `/chart/${chart.chartID}/render.svg` }, "SVG"))));
  setMain(h("h1", {}, "Charts"), figures.length ? h("div", { class: "charts" }, figures) : h("p", { class: "muted" }, "No charts."));
}

window.addEventListener("hashchange", route);
route();
