/* Sources: the catalog of source connection specs, the wizard that creates a connection, and a
 * connection's page with its explorer and table preview. Only the public API, through HW.api. */
(function () {
  "use strict";

  const { api, el } = HW;
  const FS = "/data/foundation/flowservice";
  const DATA_LAKE = "c604ff05-7f1a-43c0-8e18-33bf874cb11c";

  const ui = (spec) => (spec.attributes && spec.attributes.uiAttributes) || {};
  const specLabel = (spec) => ui(spec).label || spec.name;
  const explorable = (spec) => Boolean((ui(spec).apiFeatures || {}).exploreSupported);
  const isSource = (spec) => Boolean(spec.attributes && spec.attributes.isSource) && spec.id !== DATA_LAKE;
  const problemText = (p) => (p && (p.detail || p.title)) || (typeof p === "string" && p) || "The request failed.";

  /* Every page of a list (follows _links.next). */
  async function listAll(path) {
    const items = [];
    let next = path;
    for (let i = 0; next && i < 20; i++) {
      const r = await api("GET", next);
      if (!r.ok) return r;
      items.push(...(r.data.items || []));
      next = r.data._links && r.data._links.next ? r.data._links.next.href : null;
    }
    return { ok: true, data: items };
  }

  async function sourceSpecs() {
    const r = await listAll(FS + "/connectionSpecs?limit=1000");
    return r.ok ? { ok: true, data: r.data.filter(isSource) } : r;
  }

  function initials(text) {
    const words = String(text).split(/[\s._-]+/).filter(Boolean);
    const letters = words.length > 1 ? words[0][0] + words[1][0] : String(text).slice(0, 2);
    return letters.toUpperCase();
  }

  /* The spec's icon: its uiAttributes icon key styles it (sources.css); the text is the initials. */
  function icon(spec) {
    const key = (ui(spec).icon || {}).key || spec.name;
    return el("span", { class: "icon", "aria-hidden": "true", dataset: { icon: key }, text: initials(specLabel(spec)) });
  }

  const ACRONYMS = { url: "URL", id: "ID", api: "API", uri: "URI", sql: "SQL", ssl: "SSL", http: "HTTP" };

  /* "securityToken" -> "Security token", "environmentUrl" -> "Environment URL". */
  function humanize(name) {
    const words = name.replace(/([a-z0-9])([A-Z])/g, "$1 $2").replace(/[_-]+/g, " ").toLowerCase().split(" ");
    const text = words.map((w) => ACRONYMS[w] || w).join(" ");
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  /* An auth spec's JSON Schema for the form: without the properties the server sets (readOnly), and
   * with a readable title for each field that has none. */
  function writableSchema(schema) {
    const props = {};
    for (const [name, prop] of Object.entries((schema && schema.properties) || {})) {
      if (!prop.readOnly) props[name] = Object.assign({ title: humanize(name) }, prop);
    }
    return Object.assign({}, schema, { properties: props });
  }

  function secretNames(authSpec) {
    const props = ((authSpec && authSpec.spec) || {}).properties || {};
    return new Set(Object.keys(props).filter((k) => props[k].format === "password"));
  }

  function facts(dl, rows) {
    dl.replaceChildren(...rows.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", {}, value)]));
    dl.removeAttribute("aria-busy");
  }

  function errorBox(title, problem, hint) {
    return el(
      "div",
      { class: "outcome failed", role: "alert" },
      el("p", {}, el("strong", { text: title })),
      el("p", { text: problemText(problem) }),
      hint ? el("p", { class: "muted", text: hint }) : null
    );
  }

  function cell(value) {
    if (value === null || value === undefined) return el("span", { class: "muted", text: "null" });
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  // --- the catalog ----------------------------------------------------------------------------------

  async function catalog(root) {
    const tiles = root.querySelector("#source-tiles");
    const search = root.querySelector("#source-search");
    const count = root.querySelector("#source-count");
    const none = root.querySelector("#source-none");
    const specs = await sourceSpecs();
    tiles.removeAttribute("aria-busy");
    if (!specs.ok) {
      HW.showErrors(null, specs.data);
      return;
    }
    const list = specs.data.sort((a, b) => specLabel(a).localeCompare(specLabel(b)));
    const entries = list.map((spec) => {
      const category = (spec.attributes || {}).category || "";
      const tile = el(
        "li",
        { class: "tile" },
        el("div", { class: "tile-head" }, icon(spec), el("span", { class: "category", text: category })),
        el("h3", {}, el("a", { href: "/console/sources/new?spec=" + encodeURIComponent(spec.id), text: specLabel(spec), "data-needs": "manage-sources" })),
        el("p", { class: "description", text: ui(spec).description || "" })
      );
      return { tile, text: [specLabel(spec), spec.name, category].join(" ").toLowerCase() };
    });
    tiles.replaceChildren(...entries.map((e) => e.tile));
    function filter() {
      const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
      let shown = 0;
      for (const e of entries) {
        e.tile.hidden = !words.every((w) => e.text.includes(w));
        if (!e.tile.hidden) shown++;
      }
      none.hidden = shown > 0;
      count.textContent = shown === entries.length ? `${shown} sources` : `${shown} of ${entries.length} sources`;
    }
    search.addEventListener("input", filter);
    filter();
    await connections(root.querySelector("#source-connections"), list);
  }

  async function connections(box, specs) {
    const byId = new Map(specs.map((s) => [s.id, s]));
    const ids = specs.map((s) => s.id).join(",");
    const r = await listAll(`${FS}/connections?orderby=-createdAt&property=${encodeURIComponent("connectionSpec.id==" + ids)}`);
    box.removeAttribute("aria-busy");
    if (!r.ok) {
      box.replaceChildren(errorBox("The accounts could not be listed.", r.data));
      return;
    }
    const columns = [
      { label: "Name", value: (c) => el("a", { href: "/console/sources/" + encodeURIComponent(c.id), text: c.name }) },
      { label: "Source", value: (c) => (byId.has(c.connectionSpec.id) ? specLabel(byId.get(c.connectionSpec.id)) : c.connectionSpec.id) },
      { label: "Authentication", value: (c) => (c.auth && c.auth.specName) || "None" },
      { label: "State", value: (c) => el("span", { class: "badge " + (c.state || ""), text: c.state || "" }) },
      { label: "Created", value: (c) => HW.when(c.createdAt) },
    ];
    box.replaceChildren(HW.table(columns, r.data, { empty: "No accounts in this sandbox yet: add one from the catalog above." }));
  }

  // --- the wizard -----------------------------------------------------------------------------------

  async function wizardPage(root) {
    const banner = root.querySelector("#wizard-spec");
    const specId = root.dataset.spec;
    if (!specId) {
      banner.replaceChildren(el("p", {}, "Pick a source in the ", el("a", { href: "/console/sources", text: "catalog" }), " first."));
      return;
    }
    const r = await api("GET", `${FS}/connectionSpecs/${encodeURIComponent(specId)}`);
    const spec = r.ok ? r.data.items[0] : null;
    if (!spec || !isSource(spec)) {
      banner.replaceChildren(errorBox("This source cannot be set up here.", r.ok ? "It is not a source." : r.data));
      return;
    }
    banner.replaceChildren(
      el("div", { class: "row" }, icon(spec), el("strong", { text: specLabel(spec) }), el("span", { class: "muted", text: (spec.attributes || {}).category || "" })),
      el("p", { class: "muted", text: ui(spec).description || "" })
    );
    new SourceWizard(root.querySelector("#wizard"), spec);
  }

  class SourceWizard {
    constructor(root, spec) {
      this.root = root;
      this.spec = spec;
      this.authSpecs = spec.authSpec || [];
      this.values = {}; // typed auth params per auth spec, kept when switching between them
      this.connection = null; // {id, etag} once the test step created it
      this.found = null; // the explored root, once the test passed
      this.busy = false;
      this.testRun = 0;
      this.name = root.querySelector("#conn-name");
      this.description = root.querySelector("#conn-description");
      this.result = root.querySelector("#test-result");
      this.testAgain = root.querySelector("#test-again");
      this.setUpAuth();
      root.hidden = false;
      this.wizard = HW.wizard(root, { onStep: (step) => this.leave(step), onShow: (step) => this.entered(step) });
      const buttons = root.querySelector(".wizard-buttons");
      this.save = el("button", { type: "button", class: "primary", text: "Save", hidden: true, onclick: () => this.finish() });
      this.cancel = el("button", { type: "button", class: "secondary", text: "Cancel", onclick: () => this.abandon() });
      buttons.append(this.save, this.cancel);
      // Next waits for a passing connection test: while it cannot be used, the words beside it say why.
      this.next = Array.from(buttons.querySelectorAll("button.primary")).find((b) => b !== this.save);
      this.nextWhy = el("p", { class: "help next-why", id: "next-why", role: "status", hidden: true });
      buttons.after(this.nextWhy);
      this.testAgain.addEventListener("click", () => this.test());
      // Enter in a field moves on (Next, or Save on the last step); the form is never submitted.
      root.addEventListener("submit", (event) => event.preventDefault());
      root.addEventListener("keydown", (event) => {
        if (event.key !== "Enter" || !event.target.matches("input:not([type=checkbox])")) return;
        event.preventDefault();
        const primary = Array.from(buttons.querySelectorAll("button.primary")).find((b) => !b.hidden);
        if (primary) primary.click();
      });
      this.entered("name");
    }

    setUpAuth() {
      const choice = this.root.querySelector("#auth-choice");
      this.select = this.root.querySelector("#auth-spec");
      this.fields = this.root.querySelector("#auth-fields");
      if (!this.authSpecs.length) {
        this.root.querySelector("#auth-none").hidden = false;
        return;
      }
      choice.hidden = this.authSpecs.length < 2;
      this.select.replaceChildren(...this.authSpecs.map((a) => el("option", { value: a.name, text: a.name })));
      this.select.addEventListener("change", () => {
        this.values[this.authName] = this.form.read();
        this.renderAuth();
      });
      this.renderAuth();
    }

    get authSpec() {
      return this.authSpecs.find((a) => a.name === this.select.value) || this.authSpecs[0] || null;
    }

    renderAuth() {
      const auth = this.authSpec;
      this.authName = auth.name;
      const schema = writableSchema(auth.spec);
      this.root.querySelector("#auth-spec-help").textContent = (auth.spec && auth.spec.description) || "";
      this.form = HW.schemaForm(this.fields, schema, "auth.params", this.values[auth.name]);
    }

    body() {
      const body = {
        name: this.name.value.trim(),
        description: this.description.value.trim(),
        connectionSpec: { id: this.spec.id, version: this.spec.version || "1.0" },
      };
      if (this.authSpecs.length) body.auth = { specName: this.authSpec.name, params: this.form.read() };
      return body;
    }

    /* Before moving forward from a step: false stays on it. */
    async leave(step) {
      if (this.busy) return false;
      HW.clearErrors(this.root);
      if (step === "name" && !this.name.value.trim()) {
        HW.showErrors(this.root, { report: { errors: [{ path: "name", message: "Give the connection a name." }] } });
        return false;
      }
      if (step === "auth") return this.store();
      if (step === "test" && !this.found) {
        (this.result.querySelector("[role=alert]") || this.root.querySelector("#test-heading")).focus();
        return false;
      }
      return true;
    }

    /* Next on the test step: usable once the test passed; else aria-disabled with the reason beside it. */
    gate(why) {
      const blocked = this.wizard.current() === "test" && !this.found;
      if (!this.next) return;
      if (blocked) {
        this.next.setAttribute("aria-disabled", "true");
        this.next.setAttribute("aria-describedby", "next-why");
        this.nextWhy.textContent = why || "Next is disabled until the connection test passes: it is running now.";
        this.nextWhy.hidden = false;
      } else {
        this.next.removeAttribute("aria-disabled");
        this.next.removeAttribute("aria-describedby");
        this.nextWhy.hidden = true;
        this.nextWhy.textContent = "";
      }
    }

    entered(step) {
      this.gate();
      this.save.hidden = step !== "review";
      if (step === "test") this.test();
      if (step === "review") this.review();
      const section = this.root.querySelector(`section[data-step="${step}"]`);
      const first = Array.from(section.querySelectorAll("h3[tabindex], input, select, textarea")).find((n) => n.checkVisibility());
      if (first) first.focus();
    }

    /* Create the connection (or update the one this wizard created) with what the first two steps say. */
    async store() {
      this.busy = true;
      this.root.setAttribute("aria-busy", "true");
      try {
        const body = this.body();
        let r;
        if (!this.connection) {
          r = await api("POST", `${FS}/connections`, body);
        } else {
          const ops = [
            { op: "replace", path: "/name", value: body.name },
            { op: "replace", path: "/description", value: body.description },
          ];
          if (body.auth) ops.push({ op: "replace", path: "/auth", value: body.auth });
          r = await api("PATCH", `${FS}/connections/${this.connection.id}`, ops, { etag: this.connection.etag });
        }
        if (!r.ok) {
          this.showProblem(r.data);
          return false;
        }
        this.connection = { id: r.data.id, etag: r.data.etag || r.etag };
        return true;
      } finally {
        this.busy = false;
        this.root.removeAttribute("aria-busy");
      }
    }

    /* API errors next to their fields, on the step that holds the first of them. */
    showProblem(problem) {
      const errors = (problem && problem.report && problem.report.errors) || [];
      for (const error of errors) {
        let path = error.path || "";
        while (path) {
          const field = this.root.querySelector(`[data-path="${CSS.escape(path)}"]`);
          if (field) {
            const section = field.closest("section[data-step]");
            if (section && section.hidden) this.wizard.show(section.dataset.step);
            HW.showErrors(this.root, problem);
            return;
          }
          path = path.slice(0, Math.max(0, path.lastIndexOf(".")));
        }
      }
      HW.showErrors(this.root, problem);
    }

    async test() {
      const run = ++this.testRun;
      this.found = null;
      this.testAgain.hidden = true;
      this.result.replaceChildren(el("p", { class: "muted", text: "Testing the connection…" }));
      this.gate();
      let outcome;
      if (!explorable(this.spec)) {
        this.found = [];
        outcome = el(
          "div",
          { class: "outcome ok" },
          el("p", {}, el("strong", { text: "The connection is saved." })),
          el("p", { text: `${specLabel(this.spec)} connections receive the data sent to them; there is nothing to explore.` })
        );
      } else {
        const r = await api("GET", `${FS}/connections/${this.connection.id}/explore?objectType=root`);
        if (run !== this.testRun) return;
        if (r.ok) {
          this.found = Array.isArray(r.data) ? r.data : [];
          const names = this.found.map((item) => item.name);
          const shown = names.slice(0, 30);
          outcome = el(
            "div",
            { class: "outcome ok" },
            el("p", {}, el("strong", { text: "Connection successful." }), ` ${names.length} object${names.length === 1 ? "" : "s"} found.`),
            el("ul", { class: "found", "aria-label": "Objects found" }, shown.map((n) => el("li", { text: n }))),
            names.length > shown.length ? el("p", { class: "muted", text: `and ${names.length - shown.length} more` }) : null
          );
        } else {
          outcome = errorBox(
            "The connection test failed.",
            r.data,
            "Go back to Authenticate to correct the credentials, then come back to test again."
          );
          outcome.setAttribute("tabindex", "-1");
        }
      }
      this.result.replaceChildren(outcome);
      this.testAgain.hidden = false;
      this.gate(
        "Next is disabled because the connection test failed: go Back to Authenticate to correct the credentials, " +
          "or press Test again once the source is reachable."
      );
    }

    review() {
      const body = this.body();
      const rows = [
        ["Source", specLabel(this.spec)],
        ["Name", body.name],
        ["Description", body.description || "—"],
      ];
      if (body.auth) {
        const secrets = secretNames(this.authSpec);
        rows.push(["Authentication", body.auth.specName]);
        for (const [key, value] of Object.entries(body.auth.params)) {
          rows.push([humanize(key), secrets.has(key) ? "••••••••" : typeof value === "object" ? JSON.stringify(value) : String(value)]);
        }
      }
      if (explorable(this.spec)) rows.push(["Objects found", String((this.found || []).length)]);
      facts(this.root.querySelector("#review-facts"), rows);
    }

    finish() {
      location.href = "/console/sources/" + encodeURIComponent(this.connection.id);
    }

    /* Leave the wizard; a connection the test step created is deleted. */
    async abandon() {
      if (this.busy) return; // a create in flight: its answer decides what there is to delete
      if (this.connection) {
        const r = await api("DELETE", `${FS}/connections/${this.connection.id}`);
        if (!r.ok && r.status !== 404) {
          HW.showErrors(this.root, r.data);
          return;
        }
      }
      location.href = "/console/sources";
    }
  }

  // --- a connection's page --------------------------------------------------------------------------

  async function detailPage(root) {
    const id = root.dataset.id;
    const r = await api("GET", `${FS}/connections/${encodeURIComponent(id)}`);
    const dl = root.querySelector("#conn-facts");
    if (!r.ok) {
      dl.removeAttribute("aria-busy");
      dl.replaceWith(errorBox("This account could not be read.", r.data));
      return;
    }
    const conn = r.data.items[0];
    const s = await api("GET", `${FS}/connectionSpecs/${encodeURIComponent(conn.connectionSpec.id)}`);
    const spec = s.ok ? s.data.items[0] : { id: conn.connectionSpec.id, name: conn.connectionSpec.id };
    document.getElementById("conn-title").textContent = conn.name;
    document.title = `${conn.name} · Headwater`;
    const auth = conn.auth || {};
    const params = Object.entries(auth.params || {});
    const paramList = el("dl", { class: "facts params" });
    facts(paramList, params.map(([k, v]) => [humanize(k), typeof v === "object" ? JSON.stringify(v) : String(v)]));
    facts(dl, [
      ["Source", el("span", { class: "row" }, icon(spec), specLabel(spec), el("span", { class: "muted", text: (spec.attributes || {}).category || "" }))],
      ["Description", conn.description || "—"],
      ["Authentication", auth.specName || "None"],
      ["Parameters", params.length ? paramList : "—"],
      ["State", el("span", { class: "badge " + conn.state, text: conn.state })],
      ["Created", `${HW.when(conn.createdAt)} by ${conn.createdBy || "?"}`],
      ["ID", el("span", { class: "row" }, el("code", { text: conn.id }), HW.copyButton(conn.id, "Copy ID"))],
    ]);
    const section = root.querySelector("#explore-section");
    section.hidden = false;
    if (!explorable(spec)) {
      section.querySelector(".toolbar").hidden = true;
      root.querySelector("#explore-status").replaceChildren(
        el("p", { class: "muted", text: `${specLabel(spec)} accounts receive the data sent to them; there is nothing to explore.` })
      );
      return;
    }
    new Explorer(root, conn.id).load();
  }

  class Explorer {
    constructor(root, id) {
      this.id = id;
      this.status = root.querySelector("#explore-status");
      this.tree = root.querySelector("#explore-tree");
      this.filter = root.querySelector("#explore-filter");
      this.preview = root.querySelector("#preview");
      this.nodes = [];
      this.filter.addEventListener("input", () => this.applyFilter());
      root.querySelector("#explore-refresh").addEventListener("click", () => this.load());
    }

    async load() {
      this.status.replaceChildren(el("p", { class: "muted", text: "Exploring the account…" }));
      this.tree.setAttribute("aria-busy", "true");
      const r = await api("GET", `${FS}/connections/${this.id}/explore?objectType=root`);
      this.tree.removeAttribute("aria-busy");
      if (!r.ok) {
        this.tree.replaceChildren();
        this.status.replaceChildren(errorBox("The account could not be explored.", r.data));
        return;
      }
      const items = Array.isArray(r.data) ? r.data : [];
      this.status.replaceChildren(el("p", { class: "muted", text: `${items.length} object${items.length === 1 ? "" : "s"}. Pick a table to see its columns and a preview of its rows.` }));
      this.nodes = items.map((item, i) => this.node(item, i));
      this.tree.replaceChildren(el("ul", { "aria-label": "Objects" }, this.nodes.map((n) => n.li)));
      this.applyFilter();
    }

    node(item, i) {
      const name = item.path || item.name;
      const type = el("span", { class: "type", text: item.type });
      const label = item.label && item.label !== item.name ? ` (${item.label})` : "";
      if (item.type === "folder") {
        const li = el("li", { class: "folder" }, el("span", { text: item.name + label }), type);
        return { li, text: (item.name + label).toLowerCase() };
      }
      const columns = el("ul", { class: "columns", id: `columns-${i}`, hidden: true, "aria-label": `Columns of ${item.name}` });
      const button = el("button", { type: "button", class: "node", "aria-expanded": "false", "aria-controls": columns.id, text: item.name + label });
      const li = el("li", {}, button, type, columns);
      button.addEventListener("click", () => this.open(item, name, button, columns));
      return { li, text: (item.name + label).toLowerCase() };
    }

    applyFilter() {
      const q = this.filter.value.trim().toLowerCase();
      for (const n of this.nodes) n.li.hidden = Boolean(q) && !n.text.includes(q);
    }

    async open(item, name, button, columns) {
      if (button.getAttribute("aria-expanded") === "true") {
        button.setAttribute("aria-expanded", "false");
        columns.hidden = true;
        return;
      }
      this.tree.querySelectorAll("button.node.selected").forEach((b) => b.classList.remove("selected"));
      button.classList.add("selected");
      button.setAttribute("aria-busy", "true");
      this.showPreview(item.name, "Loading the preview…", null);
      const r = await api("GET", `${FS}/connections/${this.id}/explore?objectType=table&object=${encodeURIComponent(name)}`);
      button.removeAttribute("aria-busy");
      if (!r.ok) {
        this.showPreview(item.name, "", errorBox(`${item.name} could not be read.`, r.data));
        return;
      }
      const cols = (r.data.schema && r.data.schema.columns) || [];
      const rows = r.data.data || [];
      columns.replaceChildren(...cols.map((c) => el("li", {}, c.name, el("span", { class: "type", text: c.type }))));
      columns.hidden = false;
      button.setAttribute("aria-expanded", "true");
      const table = HW.table(
        cols.map((c) => ({ label: c.name, value: (row) => cell(row[c.name]) })),
        rows,
        { caption: `Preview of ${item.name}`, empty: "This table has no rows." }
      );
      this.showPreview(item.name, `${cols.length} columns · the first ${rows.length} rows`, table);
    }

    showPreview(name, note, content) {
      this.preview.hidden = false;
      this.preview.querySelector("#preview-heading").textContent = name;
      this.preview.querySelector("#preview-note").textContent = note;
      this.preview.querySelector("#preview-table").replaceChildren(...(content ? [content] : []));
    }
  }

  // --- start --------------------------------------------------------------------------------------

  const pages = [
    ["sources-catalog", catalog],
    ["source-wizard", wizardPage],
    ["source-detail", detailPage],
  ];
  for (const [id, start] of pages) {
    const root = document.getElementById(id);
    if (root) start(root);
  }
})();
