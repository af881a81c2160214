/* Activations: activation flows with their delivery counts (the sum of their runs'
 * metrics.deliverySummary) and latency p50/p99; one flow's runs and dead letters, with Replay and Replay
 * all. An audience's activation also shows its audience, both its requests, and what entering and exiting
 * profiles delivered (activations-audience.js). Uses the Flow Service API through HW.api; icons and list
 * paging come from destinations.js. */
(function () {
  "use strict";

  const FS = "/data/foundation/flowservice";
  const COUNTS = [
    ["delivered", "Delivered"],
    ["retried", "Retried"],
    ["failed", "Failed attempts"],
    ["deadLettered", "Dead-lettered"],
  ];
  const SHORT = { failed: "Failed", entered: "Entered", exited: "Exited" };
  const AUDIENCE_COUNTS = [
    ["entered", "Entered, delivered"],
    ["exited", "Exited, delivered"],
  ];
  const { api, el } = window.HW;
  const { iconBox, listAll } = window.HWDestinations;
  const AUD = window.HWAudienceActivations;

  function boundsOf(root) {
    return (root.dataset.bounds || "").split(",").filter(Boolean).map(Number);
  }

  /* Counts and latency of runs: their deliverySummary added up, p50/p99 from the merged histogram (the
   * upper bound of the bucket holding the quantile, as the API computes a run's). */
  function totals(runs, bounds) {
    const out = { delivered: 0, retried: 0, failed: 0, deadLettered: 0, p50: null, p99: null };
    let histogram = [];
    for (const run of runs) {
      const summary = (run.metrics && run.metrics.deliverySummary) || {};
      for (const [key] of COUNTS) out[key] += Number(summary[key] || 0);
      (summary.latencyHistogram || []).forEach((n, i) => (histogram[i] = (histogram[i] || 0) + Number(n || 0)));
    }
    const total = histogram.reduce((a, b) => a + b, 0);
    if (total && bounds.length) {
      for (const [name, q] of [["p50", 0.5], ["p99", 0.99]]) {
        let seen = 0;
        for (let i = 0; i < histogram.length; i++) {
          seen += histogram[i] || 0;
          if (seen >= q * total) {
            out[name] = bounds[Math.min(i, bounds.length - 1)];
            break;
          }
        }
      }
    } else if (runs.length === 1) {
      const latency = ((runs[0].metrics || {}).deliverySummary || {}).latencyMs || {};
      out.p50 = latency.p50 ?? null;
      out.p99 = latency.p99 ?? null;
    }
    return out;
  }

  function ms(value) {
    return value === null || value === undefined ? "—" : `${Number(value).toLocaleString()} ms`;
  }

  function num(value) {
    return Number(value || 0).toLocaleString();
  }

  function badge(state) {
    return el("span", { class: "badge " + (state || ""), text: state || "unknown" });
  }

  function requestLine(target) {
    return target && target.params ? el("code", { text: `${target.params.method} ${target.params.url}` }) : "—";
  }

  function numeric(label, key) {
    return { label, value: (row) => el("span", { class: "num", dataset: { count: key }, text: num(row[key]) }) };
  }

  /* --- the list ------------------------------------------------------------------------------ */

  async function initList(root) {
    const box = document.getElementById("act-list");
    const bounds = boundsOf(root);
    const dest = root.dataset.destinationSpec;
    const [flows, targets, connections] = await Promise.all([
      listAll(`${FS}/flows?property=flowSpec.id==${root.dataset.spec}&orderby=name&limit=100`),
      listAll(`${FS}/targetConnections?property=connectionSpec.id==${dest}&limit=1000`),
      listAll(`${FS}/connections?property=connectionSpec.id==${dest}&limit=1000`),
    ]);
    box.removeAttribute("aria-busy");
    const failed = [flows, targets, connections].find((r) => !r.ok);
    if (failed) {
      box.replaceChildren();
      window.HW.showErrors(null, failed.data);
      return;
    }
    const runsOf = {};
    for (let i = 0; i < flows.items.length; i += 40) {
      const ids = flows.items.slice(i, i + 40).map((f) => f.id);
      const runs = await listAll(`${FS}/runs?property=flowId==${ids.join(",")}&limit=1000`);
      for (const run of runs.items) (runsOf[run.flowId] = runsOf[run.flowId] || []).push(run);
    }
    const targetById = Object.fromEntries(targets.items.map((t) => [t.id, t]));
    const connById = Object.fromEntries(connections.items.map((c) => [c.id, c]));
    const rows = flows.items.map((flow) => {
      const target = targetById[(flow.targetConnectionIds || [])[0]];
      const conn = target ? connById[target.baseConnectionId] : null;
      const runs = runsOf[flow.id] || [];
      const last = runs.reduce((a, b) => (!a || (b.createdAt || 0) > (a.createdAt || 0) ? b : a), null);
      return Object.assign({ flow, conn, runs: runs.length, last }, totals(runs, bounds));
    });
    box.replaceChildren(
      window.HW.table(
        [
          { label: "Name", value: (r) => el("a", { href: "/console/activations/" + encodeURIComponent(r.flow.id), text: r.flow.name }) },
          {
            label: "Destination",
            value: (r) => (r.conn ? el("span", { class: "named" }, iconBox(r.conn.icon, 18), el("a", { href: "/console/destinations/" + encodeURIComponent(r.conn.id), text: r.conn.name })) : "—"),
          },
          { label: "State", value: (r) => badge(r.flow.state) },
          ...COUNTS.map(([key, label]) => numeric(SHORT[key] || label, key)),
          { label: "p50", value: (r) => el("span", { class: "num", text: ms(r.p50) }) },
          { label: "p99", value: (r) => el("span", { class: "num", text: ms(r.p99) }) },
          { label: "Last run", value: (r) => (r.last ? window.HW.when(r.last.updatedAt || r.last.createdAt) : "never") },
        ],
        rows,
        { caption: "p50 and p99: the latency from a record taken to its delivery, over every run.", empty: "No activation flows in this sandbox yet: Create activation sends a source's records or an audience to a destination." }
      )
    );
    numericCells(box);
  }

  /* Right-align the count columns (HW.table has no per-column class). */
  function numericCells(scope) {
    scope.querySelectorAll("span.num").forEach((span) => span.parentElement.classList.add("num"));
    scope.querySelectorAll("table.grid").forEach((table) => {
      const columns = Array.from(table.querySelectorAll("tbody tr:first-child td")).map((td) => td.classList.contains("num"));
      table.querySelectorAll("thead th").forEach((th, i) => columns[i] && th.classList.add("num"));
    });
  }

  /* --- one flow ------------------------------------------------------------------------------ */

  async function initDetail(root) {
    const id = root.dataset.flowId;
    const box = document.getElementById("act-detail");
    const bounds = boundsOf(root);
    const flow = await api("GET", `${FS}/flows/${encodeURIComponent(id)}`);
    box.removeAttribute("aria-busy");
    if (!flow.ok) {
      box.replaceChildren(el("p", { class: "muted", text: flow.status === 404 ? "There is no such activation flow in this sandbox." : "The flow could not be read." }));
      if (flow.status !== 404) window.HW.showErrors(null, flow.data);
      return;
    }
    const f = flow.data.items[0];
    document.getElementById("act-heading").textContent = f.name;
    if (new URLSearchParams(location.search).get("created")) window.HW.toast(`Activation ${f.name} created.`);
    document.title = `${f.name} · Headwater`;
    const targetId = (f.targetConnectionIds || [])[0];
    const sourceId = (f.sourceConnectionIds || [])[0];
    const [target, source, audience] = await Promise.all([
      targetId ? api("GET", `${FS}/targetConnections/${encodeURIComponent(targetId)}`) : null,
      sourceId ? api("GET", `${FS}/sourceConnections/${encodeURIComponent(sourceId)}`) : null,
      AUD.describe(f),
    ]);
    const t = target && target.ok ? target.data.items[0] : null;
    const conn = t ? await api("GET", `${FS}/connections/${encodeURIComponent(t.baseConnectionId)}`) : null;
    const c = conn && conn.ok ? conn.data.items[0] : null;
    const s = source && source.ok ? source.data.items[0] : null;

    const metrics = el("div", { class: "metrics", "aria-label": "Delivery counts", role: "group" });
    const runsBox = el("div", { class: "runs" });
    const lettersBox = el("div", { class: "letters" });
    const lettersErrors = el("div", { class: "general-errors", "data-errors": "", role: "alert", hidden: true });
    const replayAll = el("button", { type: "button", class: "secondary", text: "Replay all", "data-needs": "manage-destinations" });
    const replaySummary = el("p", { class: "outcome", role: "status" });
    const refresh = el("button", { type: "button", class: "secondary small", text: "Refresh" });
    // A dataset's activation delivers the rows added since its last run: Run now starts one.
    const fromDataset = Boolean(s && s.params && s.params.dataSetId);
    const runNow = fromDataset ? el("button", { type: "button", class: "secondary small", text: "Run now", "data-needs": "run-dataflows" }) : null;
    const outcomes = {};

    const bindings = ((f.transformations || []).find((x) => x.name === "Variables") || { params: {} }).params.bindings || {};
    box.replaceChildren(
      el(
        "p",
        { class: "row flow-line" },
        badge(f.state),
        "From ",
        audience ? ["audience ", AUD.audienceLink(audience)] : el("strong", { text: s ? s.name : sourceId || "?" }),
        " to ",
        c ? iconBox(c.icon, 18) : null,
        c ? el("a", { href: "/console/destinations/" + encodeURIComponent(c.id), text: c.name }) : el("strong", { text: targetId || "?" })
      ),
      el("section", { "aria-labelledby": "counts-h" }, el("h2", { id: "counts-h", class: "row" }, "Delivery ", refresh, runNow), metrics),
      el(
        "section",
        { "aria-labelledby": "letters-h" },
        el("h2", { id: "letters-h", text: "Dead letters" }),
        el("p", { class: "muted", text: "Records the destination would not take. Replay sends one again, with its idempotency key, once the cause is fixed." }),
        lettersErrors,
        el("div", { class: "toolbar" }, replayAll, replaySummary),
        lettersBox
      ),
      el("section", { "aria-labelledby": "runs-h" }, el("h2", { id: "runs-h", text: "Runs" }), runsBox),
      el(
        "section",
        { class: "card", "aria-labelledby": "flow-h" },
        el("h2", { id: "flow-h", text: "Flow" }),
        el(
          "dl",
          { class: "facts" },
          el("dt", { text: "State" }),
          el("dd", {}, badge(f.state)),
          audience ? [el("dt", { text: "Audience" }), el("dd", {}, AUD.audienceLink(audience))] : [el("dt", { text: "Source" }), el("dd", { text: s ? s.name : sourceId || "—" })],
          el("dt", { text: "Destination" }),
          el("dd", {}, c ? el("span", { class: "named" }, iconBox(c.icon, 18), el("a", { href: "/console/destinations/" + encodeURIComponent(c.id), text: c.name })) : targetId || "—"),
          el("dt", { text: audience ? "When a profile enters" : "Request" }),
          el("dd", {}, requestLine(t)),
          audience ? [el("dt", { text: "When a profile exits" }), el("dd", {}, audience.exitId ? requestLine(audience.exit) : el("span", { class: "muted", text: "nothing is sent" }))] : null,
          el("dt", { text: "Variables" }),
          el(
            "dd",
            {},
            Object.keys(bindings).length
              ? el("ul", { class: "plain" }, Object.entries(bindings).map(([name, b]) => el("li", {}, el("code", { text: "${" + name + "}" }), " ← ", el("code", { text: b.source !== undefined ? b.source : b.expression }))))
              : "none"
          ),
          el("dt", { text: "Flow ID" }),
          el("dd", {}, el("code", { text: f.id }), " ", window.HW.copyButton(f.id, "Copy ID"))
        )
      )
    );

    async function loadRuns() {
      const runs = await listAll(`${FS}/runs?property=flowId==${encodeURIComponent(id)}&orderby=-createdAt&limit=100`);
      if (!runs.ok) return window.HW.showErrors(null, runs.data);
      const sum = Object.assign(totals(runs.items, bounds), audienceCounts(runs.items));
      const metric = (key, label, text) => el("div", { class: "metric", dataset: { metric: key } }, el("span", { class: "value", text }), el("span", { class: "label", text: label }));
      metrics.replaceChildren(
        ...AUDIENCE_COUNTS.filter(([key]) => audience && (key === "entered" || audience.exitId)).map(([key, label]) => metric(key, label, num(sum[key]))),
        ...COUNTS.map(([key, label]) => metric(key, label, num(sum[key]))),
        el("div", { class: "metric", dataset: { metric: "p50" } }, el("span", { class: "value", text: ms(sum.p50) }), el("span", { class: "label", text: "Latency p50" })),
        el("div", { class: "metric", dataset: { metric: "p99" } }, el("span", { class: "value", text: ms(sum.p99) }), el("span", { class: "label", text: "Latency p99" }))
      );
      const rows = runs.items.map((run) => Object.assign({ run }, ((run.metrics || {}).deliverySummary) || {}, audienceCounts([run]), { latency: (((run.metrics || {}).deliverySummary || {}).latencyMs) || {} }));
      runsBox.replaceChildren(
        window.HW.table(
          [
            { label: "Started", value: (r) => window.HW.when(r.run.createdAt) },
            { label: "Window", value: (r) => window_(r.run) },
            { label: "State", value: (r) => badge(window.HW.runState(r.run) === "receiving" ? "delivering" : r.run.state) }, // an open hour of a streaming activation
            { label: "Taken", value: (r) => el("span", { class: "num", text: num(r.taken) }) },
            ...AUDIENCE_COUNTS.filter(([key]) => audience && (key === "entered" || audience.exitId)).map(([key, label]) => numeric(SHORT[key] || label, key)),
            ...COUNTS.map(([key, label]) => numeric(SHORT[key] || label, key)),
            { label: "p50", value: (r) => el("span", { class: "num", text: ms(r.latency.p50) }) },
            { label: "p99", value: (r) => el("span", { class: "num", text: ms(r.latency.p99) }) },
          ],
          rows,
          { empty: "No runs yet: a run starts with the first record delivered." }
        )
      );
      numericCells(runsBox);
    }

    /* An audience's runs: delivered with the entering request, and with the exiting one. */
    function audienceCounts(runs) {
      if (!audience) return {};
      return { entered: AUD.byRequest(runs, audience.enterId).delivered, exited: audience.exitId ? AUD.byRequest(runs, audience.exitId).delivered : 0 };
    }

    function window_(run) {
      const params = run.params || {};
      if (params.windowStartTime) return `${window.HW.when(params.windowStartTime)} – ${window.HW.time(params.windowEndTime)}`;
      return run.streaming ? "streaming" : "on demand";
    }

    let letters = [];
    async function loadLetters() {
      const result = await api("GET", `${FS}/deadLetters?property=flowId==${encodeURIComponent(id)}&limit=100`);
      if (!result.ok) return window.HW.showErrors(lettersErrors.parentElement, result.data);
      letters = result.data.items || [];
      renderLetters(result.data._links && result.data._links.next);
    }

    function renderLetters(more) {
      replayAll.disabled = !letters.some((l) => l.state === "dead");
      lettersBox.replaceChildren(
        window.HW.table(
          [
            { label: "When", value: (l) => window.HW.when(l.lastAttemptAt || l.createdAt) },
            { label: "State", value: (l) => badge(l.state) },
            ...(audience ? [{ label: "Profile", value: (l) => (l.targetConnectionId === audience.exitId ? "exiting" : "entering") }] : []),
            { label: "Reason", value: (l) => el("span", { id: "reason-" + l.id, class: "reason", text: l.reason || "" }) },
            { label: "Response", value: (l) => (l.response ? el("span", { class: "badge " + (l.response.status < 300 ? "ok" : "failed"), text: String(l.response.status) }) : el("span", { class: "muted", text: "none" })) },
            { label: "Attempts", value: (l) => el("span", { class: "num", text: num(l.attempts) }) },
            { label: "Request", value: requestCell },
            { label: "Replay", value: replayCell },
          ],
          letters,
          { empty: "No dead letters: every record was taken." }
        )
      );
      numericCells(lettersBox);
      if (more) lettersBox.append(el("p", { class: "muted", text: "The newest 100 dead letters are shown." }));
      lettersBox.querySelectorAll("tbody tr").forEach((tr, i) => letters[i] && (tr.dataset.letter = letters[i].id));
    }

    function requestCell(letter) {
      const request = letter.request;
      if (!request) return el("span", { class: "muted", text: "not built (see the reason)" });
      return el(
        "details",
        { class: "letter-request" },
        el("summary", {}, el("code", { text: `${request.method} ${request.url}` })),
        el("dl", { class: "facts headers" }, Object.entries(request.headers || {}).flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, el("code", { text: v }))])),
        request.body ? el("pre", { class: "json", text: request.body }) : el("p", { class: "muted", text: "No body." })
      );
    }

    function replayCell(letter) {
      const outcome = outcomes[letter.id];
      const note = outcome ? el("p", { class: "outcome " + (outcome.state === "replayed" ? "ok" : "failed"), role: "status", text: describe(outcome) }) : null;
      if (letter.state === "replayed") return el("div", {}, el("span", { class: "muted", text: "Replayed" }), note);
      const button = el("button", { type: "button", class: "secondary small", text: "Replay", "aria-describedby": "reason-" + letter.id, "data-needs": "manage-destinations" });
      button.addEventListener("click", async () => {
        button.disabled = true;
        button.textContent = "Replaying…";
        const result = await api("POST", `${FS}/deadLetters/${encodeURIComponent(letter.id)}/replay`);
        if (!result.ok) {
          button.disabled = false;
          button.textContent = "Replay";
          window.HW.showErrors(lettersErrors.parentElement, result.data);
          return;
        }
        for (const r of result.data.results || []) outcomes[r.id] = r;
        await refreshLetter(letter.id);
      });
      return el("div", {}, button, note);
    }

    function describe(outcome) {
      if (outcome.state === "replayed") return outcome.status ? `Delivered on replay (HTTP ${outcome.status}).` : "Delivered on replay.";
      return `Still failing${outcome.status ? ` (HTTP ${outcome.status})` : ""}: ${outcome.error || "see the reason"}`;
    }

    async function refreshLetter(letterId) {
      const fresh = await api("GET", `${FS}/deadLetters/${encodeURIComponent(letterId)}`);
      if (fresh.ok) letters = letters.map((l) => (l.id === letterId ? fresh.data.items[0] : l));
      renderLetters(false);
      const row = lettersBox.querySelector(`tr[data-letter="${CSS.escape(letterId)}"]`);
      const focus = row && (row.querySelector("button") || row.querySelector(".outcome"));
      if (focus) {
        if (focus.tagName !== "BUTTON") focus.setAttribute("tabindex", "-1");
        focus.focus();
      }
    }

    replayAll.addEventListener("click", async () => {
      replayAll.disabled = true;
      replaySummary.textContent = "Replaying…";
      const result = await api("POST", `${FS}/deadLetters/replay`, { flowId: id });
      if (!result.ok) {
        replaySummary.textContent = "";
        window.HW.showErrors(lettersErrors.parentElement, result.data);
        replayAll.disabled = false;
        return;
      }
      const results = result.data.results || [];
      for (const r of results) outcomes[r.id] = r;
      const done = results.filter((r) => r.state === "replayed").length;
      replaySummary.textContent = results.length ? `${done} of ${results.length} replayed${done < results.length ? `, ${results.length - done} still failing` : ""}.` : "Nothing to replay.";
      await loadLetters();
    });

    refresh.setAttribute("aria-label", "Refresh counts, runs and dead letters");
    refresh.addEventListener("click", () => Promise.all([loadRuns(), loadLetters()]));
    if (runNow) {
      runNow.addEventListener("click", async () => {
        runNow.disabled = true;
        const started = await api("POST", `${FS}/runs`, { flowId: id });
        runNow.disabled = false;
        if (!started.ok) return window.HW.showErrors(null, started.data);
        window.HW.toast("Run started: it sends the rows added since the last run.");
        loadRuns();
      });
    }
    await Promise.all([loadRuns(), loadLetters()]);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.getElementById("activations");
    if (!root) return;
    const pages = { list: initList, detail: initDetail };
    (pages[root.dataset.page] || (() => {}))(root);
  });
})();
