/* Data 360 data streams, through the same API as every client (shared pieces in data360.js).
 *
 *   streams     GET  /services/data/v62.0/ssot/data-streams?dataspace=
 *   stream-new  POST .../ssot/data-streams/actions/preview (review), POST .../ssot/data-streams (Deploy)
 *   stream      GET  .../ssot/data-streams/{id}?dataspace=, GET .../ssot/data-streams/{id}/metrics?dataspace=
 */
(function () {
  "use strict";

  const { api, el } = window.HW;
  const { SSOT, CONSOLE, problemOf, showErrors, fieldError, busy, setHeading, facts, yes, categoryBadge, cadenceText, scrolling, link, dataSpaces, currentSpace, fillSelect, streamTable, VIEWS } =
    window.HWData360;

  async function streamsView() {
    const select = document.getElementById("stream-space");
    const box = document.getElementById("stream-list");
    const wanted = new URLSearchParams(location.search).get("dataspace") || currentSpace();
    fillSelect(select, await dataSpaces(), wanted);
    if (select.value !== wanted) select.value = select.options.length ? select.options[0].value : "";
    async function load() {
      busy(box, true);
      const result = await api("GET", `${SSOT}/data-streams?dataspace=${encodeURIComponent(select.value)}`);
      busy(box, false);
      if (!result.ok) {
        box.replaceChildren();
        return HW.showErrors(document, problemOf(result));
      }
      HW.clearErrors(document);
      const streams = (result.data.dataStreams || []).slice().sort((a, b) => String(b.createdDate).localeCompare(String(a.createdDate)));
      box.replaceChildren(streamTable(streams, `No data streams in data space ${select.value} yet. Deploy some with New.`));
    }
    select.addEventListener("change", () => {
      history.replaceState(null, "", `?dataspace=${encodeURIComponent(select.value)}`);
      load();
    });
    await load();
  }

  async function streamNewView() {
    const root = document.getElementById("stream-wizard");
    const choices = document.getElementById("connector-choices");
    const eventChoices = document.getElementById("event-choices");
    const review = document.getElementById("stream-review");
    const spaceSelect = document.getElementById("stream-dataspace");
    const summary = document.getElementById("deploy-summary");
    const deployButton = document.getElementById("stream-deploy");
    const preselected = new URLSearchParams(location.search).get("connector");
    let connectors = [];

    const chosenConnector = () => {
      const input = choices.querySelector("input:checked");
      return input ? connectors.find((c) => c.id === input.value) : null;
    };
    const chosenEvents = () => Array.from(eventChoices.querySelectorAll("input:checked")).map((i) => i.value);
    const request = () => ({ connectionId: chosenConnector().id, events: chosenEvents(), dataspace: spaceSelect.value });

    /** Errors of a step the user has left: go back to it so that the message is seen. */
    function showErrorsOnStep(problem) {
      showErrors(root, problem);
      const invalid = root.querySelector('[aria-invalid="true"]');
      const section = invalid && invalid.closest("section[data-step]");
      if (section && section.hidden) {
        wizard.show(section.dataset.step);
        deployButton.hidden = true;
        showErrors(root, problem);
      }
    }

    const wizard = HW.wizard(root, {
      onStep: (leaving) => {
        HW.clearErrors(root);
        if (leaving === "connector") {
          const connector = chosenConnector();
          if (!connector) {
            fieldError(root, "connectionId", "Choose the connector whose events the data streams carry.");
            return false;
          }
          document.getElementById("events-connector").textContent = connector.label;
          if (eventChoices.dataset.connector !== connector.id) {
            eventChoices.dataset.connector = connector.id;
            eventChoices.replaceChildren(
              ...connector.events.map((e, i) =>
                el(
                  "div",
                  { class: "check-row" },
                  el("input", { type: "checkbox", id: "event-" + i, value: e.developerName }),
                  el("label", { for: "event-" + i }, e.developerName, " ", categoryBadge(e.category))
                )
              )
            );
          }
        }
        if (leaving === "events" && !chosenEvents().length) {
          fieldError(root, "events", "Select at least one event.");
          return false;
        }
        return true;
      },
      onShow: (step) => {
        deployButton.hidden = step !== "dataspace";
        if (step === "review") loadReview();
        if (step === "dataspace") loadSummary();
      },
    });

    function planView(plan) {
      const targets = new Set(plan.fields.map((f) => f.targetField));
      const keyMappings = plan.mappings.filter((m) => !targets.has(m.destination));
      return el(
        "section",
        { class: "stream-plan" },
        el("h3", {}, plan.label, " ", categoryBadge(plan.category), " ", el("span", { class: "badge", text: plan.action === "extend" ? "Adds to an existing stream" : "New stream" })),
        facts([
          ["Developer name", el("code", { text: plan.name })],
          ["Events", plan.events.join(", ")],
          ["Primary key", el("code", { text: plan.primaryKey.field })],
          ["Also mapped", el("span", { class: "key-mappings" }, keyMappings.map((m) => el("span", {}, el("code", { text: m.source }), " → ", el("code", { text: m.destination }))))],
          ["Refresh", cadenceText(plan.refreshCadenceSeconds)],
          ["Data model object", plan.dataLakeObjectInfo.class],
        ]),
        scrolling(
          HW.table(
            [
              { label: "Event", value: (f) => f.event },
              { label: "Field", value: (f) => el("code", { text: f.developerName }) },
              { label: "Data type", value: (f) => f.dataType },
              { label: "Primary key", value: (f) => (f.isPrimaryKey ? "Primary key" : "") },
              { label: "Required", value: (f) => yes(f.isDataRequired) },
              { label: "Mapped to", value: (f) => el("code", { text: f.targetField }) },
            ],
            plan.fields,
            { caption: `Fields and mapping of ${plan.label}` }
          )
        )
      );
    }

    async function preview() {
      return api("POST", `${SSOT}/data-streams/actions/preview`, request());
    }

    let latest = 0; // answers to earlier previews (the user moved on, or changed the data space) are dropped

    async function loadReview() {
      review.replaceChildren(el("p", { class: "muted", text: "Loading…" }));
      const mine = ++latest;
      const result = await preview();
      if (mine !== latest) return;
      if (!result.ok) {
        const problem = problemOf(result);
        review.replaceChildren(
          el("p", { class: "warning", text: `In data space ${spaceSelect.value}: ${problem.detail || problem.title}` }),
          el("p", { class: "help", text: "Choose another data space in the next step, or go back and choose other events." })
        );
        return;
      }
      const plans = result.data.dataStreams;
      review.replaceChildren(
        el("p", {}, `${plans.length} data stream${plans.length === 1 ? "" : "s"}: one per Profile event, one for all Engagement events.`),
        ...plans.map(planView)
      );
    }

    async function loadSummary() {
      summary.replaceChildren(el("p", { class: "muted", text: "Checking…" }));
      const mine = ++latest;
      const result = await preview();
      if (mine !== latest) return;
      if (!result.ok) {
        summary.replaceChildren();
        return showErrorsOnStep(problemOf(result));
      }
      HW.clearErrors(root);
      summary.replaceChildren(
        el("p", {}, `Deploy to data space ${result.data.dataspace} (sandbox ${result.data.sandboxName}):`),
        el(
          "ul",
          {},
          result.data.dataStreams.map((p) =>
            el("li", {}, el("strong", { text: p.label }), ` (${p.category}, ${p.action === "extend" ? "adds " : ""}${p.events.join(", ")}; ${cadenceText(p.refreshCadenceSeconds).toLowerCase()})`)
          )
        )
      );
    }

    root.querySelector(".wizard-buttons").append(deployButton);
    deployButton.hidden = true;
    spaceSelect.addEventListener("change", loadSummary);
    deployButton.addEventListener("click", async () => {
      deployButton.disabled = true;
      const result = await api("POST", `${SSOT}/data-streams`, request());
      deployButton.disabled = false;
      if (!result.ok) return showErrorsOnStep(problemOf(result));
      const streams = result.data.dataStreams;
      const space = spaceSelect.value;
      root.hidden = true;
      const done = document.getElementById("stream-deployed");
      document.getElementById("stream-deployed-body").replaceChildren(
        el("p", { text: `${streams.length} data stream${streams.length === 1 ? "" : "s"} deployed to data space ${space}. Engagement data refreshes every 15 minutes and profile data every hour unless set otherwise.` }),
        streamTable(streams, ""),
        el("p", {}, link(`${CONSOLE}/streams?dataspace=${encodeURIComponent(space)}`, "All data streams of " + space), " · ", link(`${CONSOLE}/streams/new`, "New data stream"))
      );
      done.hidden = false;
      done.focus();
      HW.toast("Deployed");
      // The address is what was saved: the stream's page, or the data space's list for several.
      const saved = streams.length === 1 && streams[0].id ? `${CONSOLE}/streams/${encodeURIComponent(streams[0].id)}` : `${CONSOLE}/streams`;
      history.replaceState(null, "", `${saved}?dataspace=${encodeURIComponent(space)}`);
    });

    const [listed, spaces] = await Promise.all([api("GET", `${SSOT}/connections?connectorType=StreamingApp`), dataSpaces()]);
    fillSelect(spaceSelect, spaces, currentSpace());
    if (!listed.ok) {
      choices.replaceChildren();
      return showErrors(root, problemOf(listed));
    }
    connectors = (listed.data.connections || []).slice().sort((a, b) => a.label.localeCompare(b.label));
    choices.replaceChildren(
      ...connectors.map((c, i) => {
        const ready = c.events.length > 0;
        return el(
          "div",
          { class: "check-row" },
          el("input", { type: "radio", name: "connector", id: "connector-" + i, value: c.id, disabled: !ready, checked: ready && c.id === preselected }),
          el(
            "label",
            { for: "connector-" + i },
            c.label,
            " ",
            el("code", { class: "muted", text: c.name }),
            ready ? ` · ${c.events.length} event${c.events.length === 1 ? "" : "s"}` : el("span", { class: "muted", text: " · no schema uploaded yet" })
          )
        );
      })
    );
    if (!connectors.length) choices.replaceChildren(el("p", { class: "muted", text: "No server-to-server connectors in this sandbox yet." }));
  }

  /* A refresh window's status in words: the open hour is still receiving records. */
  const REFRESH = {
    IN_PROGRESS: ["Receiving", "inProgress"],
    SUCCESS: ["Success", "ok"],
    PARTIAL_SUCCESS: ["Partial success", "partial"],
    FAILED: ["Failed", "failed"],
    QUEUED: ["Queued", "inProgress"],
  };

  function refreshBadge(status) {
    const [text, kind] = REFRESH[status] || [status || "—", ""];
    return el("span", { class: "badge " + kind, text });
  }

  const number = (n) => Number(n || 0).toLocaleString();

  async function streamView(root) {
    const id = root.dataset.streamId;
    const space = root.dataset.dataspace || currentSpace();
    const query = `?dataspace=${encodeURIComponent(space)}`;
    const base = `${SSOT}/data-streams/${encodeURIComponent(id)}`;
    const factsBox = document.getElementById("stream-facts");
    const countsBox = document.getElementById("stream-counts");
    const historyBox = document.getElementById("stream-history");
    // Reload counts is on the page from the start: usable while the stream itself loads.
    document.getElementById("stream-refresh").addEventListener("click", loadCounts);
    const result = await api("GET", base + query);
    busy(factsBox, false);
    if (!result.ok) {
      factsBox.replaceChildren();
      busy(countsBox, false);
      countsBox.replaceChildren();
      return HW.showErrors(document, problemOf(result));
    }
    const s = result.data;
    setHeading(s.label);
    const here = space === currentSpace(); // the console's pages for datasets and dataflows read the picked sandbox
    const lake = s.dataLakeObjectInfo || {};
    factsBox.replaceChildren(
      facts([
        ["Label", s.label],
        ["Developer name", el("code", { text: s.name })],
        ["Category", categoryBadge(s.category)],
        ["Status", el("span", { class: "badge " + (s.status === "ACTIVE" ? "ok" : ""), text: s.status })],
        ["Data space", s.dataspace],
        ["Connector", link(`${CONSOLE}/connectors/${encodeURIComponent(s.connectorInfo.connectorDetails.id)}`, s.connectorInfo.connectorDetails.name)],
        ["Events", s.connectorInfo.connectorDetails.events.join(", ")],
        ["Primary key", el("code", { text: lake.primaryKey || "" })],
        ["Refresh", cadenceText(s.refreshCadenceSeconds)],
        ["Data lake object", here ? link(`/console/datasets/${encodeURIComponent(s.dataSetId)}`, lake.name || s.label) : el("code", { text: lake.name || s.dataSetId })],
        here ? ["Dataflow", link(`/console/flows/${encodeURIComponent(s.flowId)}`, "Open dataflow")] : null,
        ["Created", HW.when(s.createdDate)],
      ])
    );
    document.getElementById("stream-fields").replaceChildren(
      scrolling(
        HW.table(
          [
            { label: "Event", value: (f) => f.event },
            { label: "Field", value: (f) => el("code", { text: f.developerName }) },
            { label: "Data type", value: (f) => f.dataType },
            { label: "Primary key", value: (f) => (f.isPrimaryKey ? "Primary key" : "") },
            { label: "Required", value: (f) => yes(f.isDataRequired) },
            { label: "Mapped to", value: (f) => el("code", { text: f.targetField }) },
          ],
          s.fields || [],
          { caption: `Fields of ${s.label}` }
        )
      )
    );

    async function loadCounts() {
      busy(countsBox, true);
      const counts = await api("GET", base + "/metrics" + query);
      busy(countsBox, false);
      if (!counts.ok) {
        countsBox.replaceChildren();
        return HW.showErrors(document, problemOf(counts));
      }
      const m = counts.data;
      const waiting =
        m.recordsWaiting === true
          ? `Yes: accepted records wait for the next refresh${m.nextRefreshDate ? ", due about " + HW.when(m.nextRefreshDate) : ""}.`
          : m.recordsWaiting === false
            ? "None"
            : "Unknown (the streaming log did not answer)";
      countsBox.replaceChildren(
        facts([
          ["Records received", el("span", { dataset: { count: "received" }, text: number(m.totalRecordsReceived) })],
          ["Records processed", el("span", { dataset: { count: "processed" }, text: number(m.totalRecordsProcessed) })],
          ["Records failed", el("span", { dataset: { count: "failed" }, text: number(m.totalRecordsFailed) })],
          ["Waiting", waiting],
          ["Last update", m.lastRefreshDate ? el("span", {}, HW.when(m.lastRefreshDate), " ", refreshBadge(m.lastRunStatus)) : "Not yet"],
        ])
      );
      historyBox.replaceChildren(
        scrolling(
          HW.table(
            [
              { label: "Window", value: (h) => `${HW.when(h.windowStartDate)} – ${HW.time(h.windowEndDate)}` },
              { label: "Status", value: (h) => refreshBadge(h.status) },
              { label: "Received", value: (h) => number(h.recordsReceived) },
              { label: "Processed", value: (h) => number(h.recordsProcessed) },
              { label: "Failed", value: (h) => number(h.recordsFailed) },
            ],
            m.refreshHistory || [],
            { caption: "Refresh windows (one per hour, newest first)", empty: "No refresh has written records yet." }
          )
        )
      );
    }
    await loadCounts();
  }

  Object.assign(VIEWS, { streams: streamsView, "stream-new": streamNewView, stream: streamView });
})();
