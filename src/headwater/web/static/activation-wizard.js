/* Create activation: Source (a streaming source connection, a dataset, or an audience) → Destination (a
 * destination, then one of its requests or a new one) → Variable bindings (each ${variable} of the request
 * bound to a field of the source, picked from its schema, or to an expression) → Review & save. Saving is
 * the calls any client makes (docs/api.md, "Destinations and activation"): the dataset's data lake source
 * connection or the Profiles source connection when there is none yet, the new request, then the
 * activation flow (flow spec cf0ccb51-…); what the flow is refused takes back what was made for it. The
 * audience's flow shape is activations-audience.js's (HWAudienceActivations.selection). */
(function () {
  "use strict";

  const { api, el } = window.HW;
  const { FS, listAll, iconBox, requestFacts } = window.HWDestinations;
  const AUD = window.HWAudienceActivations;
  const SR = "/data/foundation/schemaregistry";
  const CATALOG = "/data/foundation/catalog";
  const FULL = { Accept: "application/vnd.adobe.xed-full+json; version=1" };
  const DEFAULT_HEADERS = { Accept: "application/json", "Accept-Encoding": "gzip", "Content-Type": "application/json" };
  const KINDS = { streaming: "Streaming source", dataset: "Dataset", audience: "Audience" };

  /* The top-level ${variables} of a request (url, header names and values, body), in order of first use:
   * ${a.b} is bound as a. */
  function variablesOf(params) {
    const names = [];
    const texts = [params.url || ""];
    for (const [key, value] of Object.entries(params.headers || {})) texts.push(key, value);
    texts.push(params.body || "");
    for (const text of texts) {
      for (const match of String(text).matchAll(/\$\{([^}]*)\}/g)) {
        const name = match[1].trim().split(".")[0];
        if (name && !names.includes(name)) names.push(name);
      }
    }
    return names;
  }

  /* The leaf field paths of a resolved (xed-full) schema. */
  function leafPaths(node, prefix, out) {
    for (const [name, prop] of Object.entries((node && node.properties) || {})) {
      const path = prefix ? prefix + "." + name : name;
      let inner = prop;
      while (inner && inner.type === "array" && inner.items) inner = inner.items;
      if (inner && inner.properties) leafPaths(inner, path, out);
      else out.push(path);
    }
    return out;
  }

  async function schemaFields(schemaId) {
    if (!schemaId) return [];
    const resolved = await api("GET", `${SR}/tenant/schemas/${encodeURIComponent(schemaId)}`, null, { headers: FULL });
    return resolved.ok ? leafPaths(resolved.data, "", []) : [];
  }

  async function datasetOf(id) {
    const found = await api("GET", `${CATALOG}/dataSets/${encodeURIComponent(id)}`);
    return found.ok && found.data ? Object.values(found.data)[0] || null : null;
  }

  function init(root) {
    const form = document.getElementById("act-wizard");
    const $ = (id) => document.getElementById(id);
    const newRequestBox = $("w-new-request");
    const headers = window.HW.keyValue("r-headers", "params.headers", {});
    $("r-headers-box").append(headers);
    form.addEventListener("submit", (event) => event.preventDefault());

    const state = {
      streams: [],
      datasets: [],
      audiences: [],
      destinations: [],
      requests: [], // of the picked destination
      fields: { key: null, paths: [] }, // the picked source's field paths, for the binding picker
      bindings: {}, // variable -> {kind: "source" | "expression", value}
    };

    const kind = () => form.querySelector('input[name="w-kind"]:checked').value;
    const mode = () => form.querySelector('input[name="w-request-mode"]:checked').value;

    /* API errors name sourceConnectionIds / the audience selector: only the visible pick carries them. */
    function showKind() {
      form.querySelectorAll("[data-kind]").forEach((panel) => (panel.hidden = panel.dataset.kind !== kind()));
      form.querySelectorAll("[data-source-path], [data-audience-path]").forEach((select) => delete select.dataset.path);
      if (kind() === "streaming") $("w-stream").dataset.path = "sourceConnectionIds";
      if (kind() === "dataset") $("w-dataset").dataset.path = "sourceConnectionIds";
      if (kind() === "audience") {
        $("w-audience").dataset.path = "transformations[0].params.segmentSelectors";
        $("w-kind").dataset.path = "sourceConnectionIds";
      } else delete $("w-kind").dataset.path;
    }
    form.querySelectorAll('input[name="w-kind"]').forEach((radio) => radio.addEventListener("change", showKind));
    showKind();

    function showMode() {
      form.querySelectorAll("[data-mode]").forEach((panel) => (panel.hidden = panel.dataset.mode !== mode()));
    }
    form.querySelectorAll('input[name="w-request-mode"]').forEach((radio) => radio.addEventListener("change", showMode));
    showMode();

    function fill(select, items, label, empty) {
      select.replaceChildren(
        el("option", { value: "", text: items.length ? "Choose…" : empty }),
        ...items.map((item) => el("option", { value: item.id, text: label(item) }))
      );
    }

    async function load() {
      const specs = root.dataset.streamingSpecs;
      const [streams, datasets, audiences, destinations] = await Promise.all([
        listAll(`${FS}/sourceConnections?property=connectionSpec.id==${specs}&orderby=name&limit=1000`),
        api("GET", `${CATALOG}/dataSets?limit=100`),
        api("GET", "/data/core/ups/segment/definitions?limit=100"),
        listAll(`${FS}/connections?property=connectionSpec.id==${root.dataset.destinationSpec}&orderby=name&limit=1000`),
      ]);
      const failed = [streams, datasets, audiences, destinations].find((r) => !r.ok);
      if (failed) window.HW.showErrors(form, failed.data);
      state.streams = streams.ok ? streams.items : [];
      state.datasets = datasets.ok ? Object.entries(datasets.data || {}).map(([id, d]) => Object.assign({ id }, d)).sort((a, b) => (a.name || "").localeCompare(b.name || "")) : [];
      state.audiences = audiences.ok ? audiences.data.segments || audiences.data.children || [] : [];
      state.destinations = destinations.ok ? destinations.items : [];
      fill($("w-stream"), state.streams, (s) => s.name, "No streaming source in this sandbox (add one in Sources)");
      fill($("w-dataset"), state.datasets, (d) => d.name || d.id, "No dataset in this sandbox");
      fill($("w-audience"), state.audiences, (a) => a.name, "No audience in this sandbox (add one in Audiences)");
      fill($("w-destination"), state.destinations, (c) => c.name, "No destination in this sandbox (add one in Destinations)");
      const wanted = new URLSearchParams(location.search);
      for (const [param, id, value] of [["destination", "w-destination"], ["dataset", "w-dataset", "dataset"], ["source", "w-stream", "streaming"], ["audience", "w-audience", "audience"]]) {
        const pick = wanted.get(param);
        if (!pick || !$(id).querySelector(`option[value="${CSS.escape(pick)}"]`)) continue;
        $(id).value = pick;
        if (value) form.querySelector(`input[name="w-kind"][value="${value}"]`).checked = true;
        if (id === "w-destination") await loadRequests();
      }
      showKind();
      form.setAttribute("data-ready", "true");
    }

    async function loadRequests() {
      const conn = $("w-destination").value;
      state.requests = [];
      $("w-request-facts").replaceChildren();
      if (!conn) return fill($("w-request"), [], () => "", "Pick a destination first");
      const found = await listAll(`${FS}/targetConnections?property=baseConnectionId==${encodeURIComponent(conn)}&orderby=name&limit=1000`);
      if (!found.ok) return window.HW.showErrors(form, found.data);
      state.requests = found.items;
      fill($("w-request"), state.requests, (t) => `${t.name}: ${t.params.method} ${t.params.url}`, "This destination has no request yet: create one");
      if (state.requests.length === 1) $("w-request").value = state.requests[0].id;
      if (!state.requests.length) form.querySelector('input[name="w-request-mode"][value="new"]').checked = true;
      showMode();
      showRequest();
    }
    $("w-destination").addEventListener("change", loadRequests);

    function pickedRequest() {
      return state.requests.find((t) => t.id === $("w-request").value) || null;
    }

    function showRequest() {
      const target = pickedRequest();
      $("w-request-facts").replaceChildren(target ? requestFacts(target.params) : "");
    }
    $("w-request").addEventListener("change", showRequest);

    function readNewRequest() {
      const body = $("r-body").value;
      const params = { method: $("r-method").value, url: $("r-url").value.trim(), body: body.trim() ? body : null };
      const extra = headers.readPairs();
      if (Object.keys(extra).length) params.headers = extra;
      return params;
    }

    /* The request's params as the bindings step reads its variables. */
    function requestParams() {
      if (mode() === "new") return readNewRequest();
      const target = pickedRequest();
      return target ? target.params : { url: "" };
    }

    /* --- the source's fields ------------------------------------------------------------------ */

    function sourceKey() {
      return kind() + ":" + ({ streaming: $("w-stream"), dataset: $("w-dataset"), audience: $("w-audience") }[kind()].value || "");
    }

    async function loadFields() {
      const key = sourceKey();
      if (state.fields.key === key) return;
      let paths = [];
      if (kind() === "dataset") {
        const dataset = await datasetOf($("w-dataset").value);
        paths = await schemaFields(dataset && dataset.schemaRef ? dataset.schemaRef.id : null);
      } else if (kind() === "streaming") {
        paths = await streamingFields($("w-stream").value);
      } else {
        paths = await profileFields($("w-audience").value);
      }
      state.fields = { key, paths: [...new Set(paths)].sort() };
      $("w-fields").replaceChildren(...state.fields.paths.map((p) => el("option", { value: p })));
    }

    /* A streaming source's messages: the source fields its flow's mapping reads, or (XDM messages) the
     * fields of the schema of the dataset its flow writes. */
    async function streamingFields(sourceId) {
      const flows = await listAll(`${FS}/flows?property=sourceConnectionIds[]==${encodeURIComponent(sourceId)}&property=flowSpec.id!=${root.dataset.spec}&limit=100`);
      const paths = [];
      for (const flow of flows.ok ? flows.items : []) {
        const mapping = (flow.transformations || []).find((t) => t.name === "Mapping");
        if (mapping && mapping.params && mapping.params.mappingId) {
          const set = await api("GET", `/data/foundation/conversion/mappingSets/${encodeURIComponent(mapping.params.mappingId)}`);
          if (set.ok) for (const m of set.data.mappings || []) if (m.sourceType !== "EXPRESSION" && m.sourceType !== "STATIC" && m.sourceAttribute) paths.push(m.sourceAttribute);
          continue;
        }
        const targetId = (flow.targetConnectionIds || [])[0];
        const target = targetId ? await api("GET", `${FS}/targetConnections/${encodeURIComponent(targetId)}`) : null;
        const datasetId = target && target.ok ? ((target.data.items[0] || {}).params || {}).dataSetId : null;
        const dataset = datasetId ? await datasetOf(datasetId) : null;
        paths.push(...(await schemaFields(dataset && dataset.schemaRef ? dataset.schemaRef.id : null)));
      }
      return paths;
    }

    /* A profile: the fields of the profile-enabled datasets' schemas, its identities by namespace, and
     * its membership of the audience. */
    async function profileFields(segmentId) {
      const profiled = state.datasets.filter((d) => ((d.tags || {}).unifiedProfile || []).includes("enabled:true"));
      const schemaIds = [...new Set(profiled.map((d) => (d.schemaRef || {}).id).filter(Boolean))];
      const [namespaces, ...fields] = await Promise.all([api("GET", "/data/core/idnamespace/identities"), ...schemaIds.map(schemaFields)]);
      const paths = fields.flat().filter((p) => !p.startsWith("identityMap"));
      if (namespaces.ok && Array.isArray(namespaces.data)) paths.push(...namespaces.data.map((n) => `identityMap.${n.code}[0].id`));
      if (segmentId) paths.push(`segmentMembership.ups.${segmentId}.status`, `segmentMembership.ups.${segmentId}.lastQualificationTime`);
      return paths;
    }

    /* --- bindings ------------------------------------------------------------------------------ */

    const variablesIndex = () => (kind() === "audience" ? 1 : 0);

    function remember() {
      $("w-bindings").querySelectorAll(".binding-row").forEach((row) => {
        state.bindings[row.dataset.variable] = { kind: row.querySelector("select").value, value: row.querySelector("input").value };
      });
    }

    function renderBindings() {
      remember();
      const names = variablesOf(requestParams());
      const box = $("w-bindings");
      if (!names.length) {
        box.replaceChildren(el("p", { class: "muted", text: "The request has no ${variables}: every record sends it as it is." }));
        return;
      }
      const index = variablesIndex();
      const count = state.fields.paths.length;
      box.replaceChildren(
        el("p", { class: "help", text: count ? `${count} field${count === 1 ? "" : "s"} of the source to pick from (start typing a path).` : "The source's fields are not known here: type the dotted path of each field." }),
        ...names.map((name, i) => {
          const saved = state.bindings[name] || { kind: "source", value: "" };
          const id = `b-${i}`;
          const input = el("input", {
            id,
            type: "text",
            autocomplete: "off",
            spellcheck: "false",
            value: saved.value,
            list: saved.kind === "source" ? "w-fields" : null,
            placeholder: saved.kind === "source" ? "e.g. person.name.firstName" : 'e.g. concat(first, " ", last)',
            dataset: { path: `transformations[${index}].params.bindings.${name}` },
          });
          const choice = el(
            "select",
            { id: `${id}-kind`, "aria-label": `How \${${name}} is bound` },
            el("option", { value: "source", text: "Source field", selected: saved.kind === "source" }),
            el("option", { value: "expression", text: "Expression", selected: saved.kind === "expression" })
          );
          choice.addEventListener("change", () => {
            if (choice.value === "source") input.setAttribute("list", "w-fields");
            else input.removeAttribute("list");
            input.placeholder = choice.value === "source" ? "e.g. person.name.firstName" : 'e.g. concat(first, " ", last)';
          });
          return el("div", { class: "binding-row field", dataset: { variable: name } }, el("label", { for: id }, el("code", { text: "${" + name + "}" })), el("div", { class: "binding-inputs" }, choice, input));
        })
      );
    }

    function readBindings() {
      remember();
      const out = {};
      for (const name of variablesOf(requestParams())) {
        const b = state.bindings[name] || { kind: "source", value: "" };
        out[name] = b.kind === "expression" ? { expression: b.value.trim() } : { source: b.value.trim() };
      }
      return out;
    }

    /* --- steps ------------------------------------------------------------------------------- */

    function missing(step) {
      const errors = [];
      const need = (ok, path, message) => ok || errors.push({ path, message });
      if (step === "source") {
        need($("w-name").value.trim(), "name", "is required");
        if (kind() === "streaming") need($("w-stream").value, "sourceConnectionIds", "choose the streaming source whose messages are sent");
        if (kind() === "dataset") need($("w-dataset").value, "sourceConnectionIds", "choose the dataset whose rows are sent");
        if (kind() === "audience") need($("w-audience").value, "transformations[0].params.segmentSelectors", "choose the audience whose profiles are sent");
      }
      if (step === "destination") {
        need($("w-destination").value, "destination", "choose the destination to send to");
        if ($("w-destination").value && mode() === "existing") need($("w-request").value, "targetConnectionIds", "choose one of the destination's requests, or create a new one");
        if ($("w-destination").value && mode() === "new") {
          need($("r-name").value.trim(), "name", "is required");
          const url = $("r-url").value.trim();
          need(url, "params.url", "is required");
          if (url) need(/^https?:\/\//i.test(url), "params.url", "must start with https:// (or http://) followed by the host");
        }
      }
      if (step === "bindings") {
        const index = variablesIndex();
        for (const [name, b] of Object.entries(readBindings())) {
          const value = b.source !== undefined ? b.source : b.expression;
          need(value, `transformations[${index}].params.bindings.${name}`, b.source !== undefined ? "is required: the path of a field of the source" : "is required: an expression");
        }
      }
      return errors;
    }

    /* Errors next to their fields, on the step of the first of them; a new request's in its own box. */
    function problem(data, scope) {
      const where = scope || form;
      const errors = (data && data.report && data.report.errors) || [];
      for (const error of errors) {
        const field = window.HW.fieldFor(where, error.path || "");
        const section = field && field.closest("section[data-step]");
        if (section) {
          if (section.hidden) wizard.show(section.dataset.step);
          break;
        }
      }
      window.HW.showErrors(where, data);
    }

    const problemOf = (errors) => ({ title: "Validation failed", report: { errors } });

    const wizard = window.HW.wizard(form, {
      onStep: async (step) => {
        window.HW.clearErrors(form);
        const errors = missing(step);
        if (errors.length) {
          // A new request's fields have their own box (its "name" is the request's, not the flow's).
          const inNew = step === "destination" && mode() === "new" && $("w-destination").value;
          problem(problemOf(errors), inNew ? newRequestBox : form);
          return false;
        }
        if (step === "source") await loadFields();
        return true;
      },
      onShow: shown,
    });

    function shown(step) {
      $("w-save").hidden = step !== "review";
      if (step === "bindings") renderBindings();
      if (step === "review") renderReview();
    }

    function sourceName() {
      if (kind() === "streaming") return (state.streams.find((s) => s.id === $("w-stream").value) || {}).name;
      if (kind() === "dataset") return (state.datasets.find((d) => d.id === $("w-dataset").value) || {}).name;
      return (state.audiences.find((a) => a.id === $("w-audience").value) || {}).name;
    }

    function change(step, what) {
      return el("button", { type: "button", class: "link", text: "Change", "aria-label": `Change ${what}`, onclick: () => wizard.show(step) });
    }

    function renderReview() {
      const conn = state.destinations.find((c) => c.id === $("w-destination").value);
      const params = requestParams();
      const bindings = readBindings();
      const schedule = $("w-schedule");
      $("w-review").replaceChildren(
        el(
          "div",
          { class: "review-part" },
          el("h3", {}, "Source ", change("source", "source")),
          el(
            "dl",
            { class: "facts" },
            el("dt", { text: "Name" }),
            el("dd", { text: $("w-name").value.trim() }),
            el("dt", { text: KINDS[kind()] }),
            el("dd", { text: sourceName() || "?" }),
            kind() === "dataset" ? [el("dt", { text: "Runs" }), el("dd", { text: schedule.options[schedule.selectedIndex].text })] : null
          )
        ),
        el(
          "div",
          { class: "review-part" },
          el("h3", {}, "Destination ", change("destination", "destination")),
          el("p", { class: "named" }, conn ? iconBox(conn.icon, 24) : null, el("strong", { text: conn ? conn.name : "?" }), mode() === "new" ? el("span", { class: "muted", text: `new request ${$("r-name").value.trim()}` }) : null),
          requestFacts(mode() === "new" ? Object.assign({}, params, { headers: Object.assign({}, DEFAULT_HEADERS, params.headers || {}) }) : params)
        ),
        el(
          "div",
          { class: "review-part" },
          el("h3", {}, "Variable bindings ", change("bindings", "bindings")),
          Object.keys(bindings).length
            ? el("ul", { class: "plain", id: "w-review-bindings" }, Object.entries(bindings).map(([name, b]) => el("li", {}, el("code", { text: "${" + name + "}" }), " ← ", b.source !== undefined ? el("code", { text: b.source }) : ["expression ", el("code", { text: b.expression })])))
            : el("p", { class: "muted", text: "No variables." })
        )
      );
    }

    /* --- save -------------------------------------------------------------------------------- */

    async function sourceConnection(made) {
      if (kind() === "streaming") return { ok: true, id: $("w-stream").value };
      const lake = kind() === "dataset";
      const spec = lake ? root.dataset.lakeSpec : root.dataset.profileSpec;
      const query = `property=connectionSpec.id==${spec}` + (lake ? `&property=params.dataSetId==${encodeURIComponent($("w-dataset").value)}` : "");
      const found = await listAll(`${FS}/sourceConnections?${query}&limit=1`);
      if (!found.ok) return found;
      if (found.items.length) return { ok: true, id: found.items[0].id };
      const body = lake
        ? { name: `Dataset ${sourceName() || $("w-dataset").value}`, connectionSpec: { id: spec, version: "1.0" }, data: { format: "parquet" }, params: { dataSetId: $("w-dataset").value } }
        : { name: "Profiles", connectionSpec: { id: spec, version: "1.0" }, data: { format: "json" }, params: {} };
      const created = await api("POST", `${FS}/sourceConnections`, body);
      if (!created.ok) return { ok: false, data: created.data };
      made.push(`${FS}/sourceConnections/${encodeURIComponent(created.data.id)}`);
      return { ok: true, id: created.data.id };
    }

    function flowBody(sourceId, targetId) {
      const transformations = [];
      if (kind() === "audience") transformations.push(AUD.selection($("w-audience").value));
      transformations.push({ name: "Variables", params: { bindings: readBindings() } });
      const body = {
        name: $("w-name").value.trim(),
        flowSpec: { id: root.dataset.spec, version: "1.0" },
        sourceConnectionIds: [sourceId],
        targetConnectionIds: [targetId],
        transformations,
      };
      const schedule = $("w-schedule").value;
      if (kind() === "dataset" && schedule) {
        const [frequency, interval] = schedule.split(":");
        body.scheduleParams = { startTime: Math.floor(Date.now() / 1000), frequency, interval: Number(interval) };
      }
      return body;
    }

    const save = $("w-save");
    form.querySelector(".wizard-buttons").append(save);
    save.hidden = true;
    save.addEventListener("click", async () => {
      window.HW.clearErrors(form);
      for (const step of ["source", "destination", "bindings"]) {
        const errors = missing(step);
        if (errors.length) return problem(problemOf(errors));
      }
      save.disabled = true;
      save.textContent = "Saving…";
      const made = []; // what this save created, taken back when the flow is refused
      const undo = async () => {
        for (const path of made.reverse()) await api("DELETE", path);
        save.disabled = false;
        save.textContent = "Save";
      };
      const source = await sourceConnection(made);
      if (!source.ok) {
        await undo();
        return problem(source.data);
      }
      let targetId = $("w-request").value;
      if (mode() === "new") {
        const target = await api("POST", `${FS}/targetConnections`, {
          name: $("r-name").value.trim(),
          baseConnectionId: $("w-destination").value,
          connectionSpec: { id: root.dataset.destinationSpec, version: "1.0" },
          params: readNewRequest(),
        });
        if (!target.ok) {
          await undo();
          wizard.show("destination");
          return problem(target.data, newRequestBox);
        }
        targetId = target.data.id;
        made.push(`${FS}/targetConnections/${encodeURIComponent(targetId)}`);
      }
      const flow = await api("POST", `${FS}/flows`, flowBody(source.id, targetId));
      if (!flow.ok) {
        await undo();
        return problem(flow.data);
      }
      location.assign(`/console/activations/${encodeURIComponent(flow.data.id)}?created=1`);
    });

    load();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.getElementById("activation-new");
    if (root) init(root);
  });
})();
