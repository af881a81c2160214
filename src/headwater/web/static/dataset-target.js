/* Headwater console: the "target dataset" step of a dataflow wizard (and the Create dataset page), a
 * reusable component. Through the public API only (Catalog and Schema Registry):
 *
 *   const target = HWDatasetTarget.mount(container, {columns: [{name, type}], newOnly: false})
 *   target.ready        a promise: the datasets and schemas are loaded
 *   target.validate()   -> a message when incomplete (also shown next to the field), or null
 *   target.save()       -> Promise<{ok: true, datasetId, schemaId, schemaTitle} | {ok: false, problem}>
 *   target.describe()   -> one line for a review step
 *
 * The person picks "Existing dataset" (the sandbox's datasets, each with its schema) or "New dataset":
 * a name, a description, and an existing schema or a new one built with HWSchemaBuilder (offered the
 * columns); "Enable the dataset for Profile" appears when the schema is enabled for Profile. save()
 * creates what is new (the schema first, then the dataset) and, for an existing dataset, answers its ids.
 * Once saved, save() answers the same again. newOnly: true leaves out the existing-dataset choice.
 */
(function () {
  "use strict";

  const SR = "/data/foundation/schemaregistry";
  const CAT = "/data/foundation/catalog";
  const XED = { Accept: "application/vnd.adobe.xed+json" };
  const el = (...args) => HW.el(...args);

  let mounts = 0;

  function ensureStyles() {
    if (document.querySelector('link[href$="/schema-builder.css"]')) return;
    document.head.append(el("link", { rel: "stylesheet", href: "/console/static/schema-builder.css" }));
  }

  const isProfileSchema = (s) => !!s && (s["meta:immutableTags"] || []).includes("union");

  function mount(container, options) {
    const opts = options || {};
    ensureStyles();
    mounts += 1;
    const id = (name) => "dt" + mounts + "-" + name;
    let datasets = [];
    let schemas = [];
    let classTitles = {};
    let builder = null;
    let saved = null;

    const errorsBox = el("div", { class: "general-errors", "data-errors": "", role: "alert", hidden: true });
    const radio = (name, value, label, checked) => {
      const input = el("input", { type: "radio", name: id(name), id: id(name + "-" + value), value, checked });
      return [input, el("label", { for: id(name + "-" + value) }, input, label)];
    };
    const [useExisting, useExistingLabel] = radio("mode", "existing", "Existing dataset", !opts.newOnly);
    const [useNew, useNewLabel] = radio("mode", "new", "New dataset", !!opts.newOnly);
    const picker = el("select", { id: id("dataset"), "data-path": "dataset", "aria-describedby": id("dataset-schema") });
    const pickedSchema = el("p", { class: "help", id: id("dataset-schema"), "aria-live": "polite" });
    const name = el("input", { type: "text", id: id("name"), "data-path": "name", autocomplete: "off", "aria-required": "true" });
    const description = el("input", { type: "text", id: id("description"), "data-path": "description", autocomplete: "off" });
    const [schemaExisting, schemaExistingLabel] = radio("schema", "existing", "Use an existing schema", true);
    const [schemaNew, schemaNewLabel] = radio("schema", "new", "Build a new schema", false);
    const schemaSelect = el("select", { id: id("schema"), "data-path": "schemaRef.id", "aria-required": "true" });
    const builderBox = el("div", { class: "dt-builder", hidden: true });
    const profile = el("input", { type: "checkbox", id: id("profile"), "data-path": "tags", "aria-describedby": id("profile-help") });
    const profileField = el(
      "div",
      { hidden: true },
      el("div", { class: "field check" }, el("label", { for: id("profile"), text: "Enable the dataset for Profile" }), profile),
      el("p", { class: "help", id: id("profile-help"), text: "Its rows then feed Real-Time Customer Profile (the schema is enabled for Profile)." })
    );

    const existingPart = el(
      "div",
      { class: "dt-existing" },
      el("div", { class: "field" }, el("label", { for: id("dataset"), text: "Choose a dataset" }), picker, pickedSchema)
    );
    const schemaField = el("div", { class: "field" }, el("label", { for: id("schema"), text: "Dataset schema" }), schemaSelect);
    const newPart = el(
      "div",
      { class: "dt-new" },
      el("div", { class: "field" }, el("label", { for: id("name") }, "Dataset name", el("span", { class: "req", "aria-hidden": "true", text: " *" })), name),
      el("div", { class: "field" }, el("label", { for: id("description"), text: "Dataset description" }), description),
      el("fieldset", { class: "dt-fieldset" }, el("legend", { text: "Schema" }), el("div", { class: "dt-choice" }, schemaExistingLabel, schemaNewLabel), schemaField, builderBox),
      profileField
    );
    const root = el(
      "div",
      { class: "dataset-target", "data-dataset-target": "" },
      errorsBox,
      opts.newOnly ? null : el("fieldset", { class: "dt-fieldset" }, el("legend", { text: "Target dataset" }), el("div", { class: "dt-choice" }, useExistingLabel, useNewLabel)),
      existingPart,
      newPart
    );
    container.append(root);
    const fixed = (event) => event.target.getAttribute && event.target.getAttribute("aria-invalid") && HW.clearErrors(root);
    root.addEventListener("input", fixed);
    root.addEventListener("change", fixed);

    const mode = () => (opts.newOnly || useNew.checked ? "new" : "existing");
    const schemaMode = () => (schemaNew.checked ? "new" : "existing");
    const schemaById = (ident) => schemas.find((s) => s.$id === ident);
    const datasetById = (ident) => datasets.find((d) => d.id === ident);
    const schemaTitleOf = (ident) => (schemaById(ident) || {}).title || "a schema of another sandbox";

    function profileCapable() {
      if (schemaMode() === "new") return !!builder && builder.profileEnabled();
      return isProfileSchema(schemaById(schemaSelect.value));
    }

    function update() {
      existingPart.hidden = mode() !== "existing";
      newPart.hidden = mode() !== "new";
      schemaField.hidden = schemaMode() !== "existing";
      builderBox.hidden = schemaMode() !== "new";
      if (schemaMode() === "new" && !builder) {
        builder = HWSchemaBuilder.mount(builderBox, { columns: opts.columns || [] });
        builderBox.addEventListener("change", update);
      }
      profileField.hidden = !profileCapable();
      const d = datasetById(picker.value);
      pickedSchema.textContent = d ? "Schema: " + schemaTitleOf((d.schemaRef || {}).id) : "";
    }
    for (const input of [useExisting, useNew, schemaExisting, schemaNew]) input.addEventListener("change", update);
    picker.addEventListener("change", update);
    schemaSelect.addEventListener("change", update);

    const ready = (async () => {
      const [ds, sc, cls] = await Promise.all([
        HW.api("GET", CAT + "/dataSets?limit=1000&properties=name,schemaRef,tags,created"),
        HW.api("GET", SR + "/tenant/schemas?limit=1000", null, { headers: XED }),
        HW.api("GET", SR + "/global/classes?limit=1000", null, { headers: XED }),
      ]);
      if (!ds.ok || !sc.ok) HW.showErrors(root, (!ds.ok ? ds.data : sc.data) || { detail: "The datasets or schemas could not be read." });
      datasets = Object.entries((ds.ok && ds.data) || {}).map(([key, d]) => Object.assign({ id: key }, d));
      datasets.sort((a, b) => String(a.name || "").localeCompare(String(b.name || "")));
      schemas = ((sc.ok && sc.data.results) || []).slice().sort((a, b) => String(a.title || "").localeCompare(String(b.title || "")));
      classTitles = {};
      for (const c of (cls.ok && cls.data.results) || []) classTitles[c.$id] = c.title;
      picker.replaceChildren(
        el("option", { value: "", text: datasets.length ? "Choose a dataset…" : "No datasets in this sandbox yet" }),
        ...datasets.map((d) => el("option", { value: d.id, text: (d.name || "Unnamed dataset") + " — " + schemaTitleOf((d.schemaRef || {}).id) }))
      );
      schemaSelect.replaceChildren(
        el("option", { value: "", text: schemas.length ? "Choose a schema…" : "No schemas yet: build a new one" }),
        ...schemas.map((s) =>
          el("option", { value: s.$id, text: s.title + " (" + (classTitles[s["meta:class"]] || "custom class") + (isProfileSchema(s) ? ", enabled for Profile" : "") + ")" })
        )
      );
      if (!schemas.length) schemaNew.checked = true;
      update();
      if (builder) await builder.ready;
      root.setAttribute("data-ready", "true");
    })();

    function invalid(path, message) {
      HW.showErrors(root, { title: message, detail: message, report: { errors: [{ path, message }] } });
      return message;
    }

    function validate() {
      HW.clearErrors(root);
      if (mode() === "existing") return picker.value ? null : invalid("dataset", "Choose the dataset to write to.");
      if (!name.value.trim()) return invalid("name", "Name the dataset.");
      if (schemaMode() === "existing") return schemaSelect.value ? null : invalid("schemaRef.id", "Choose the dataset's schema, or build a new one.");
      const message = builder.validate();
      return message;
    }

    async function save() {
      if (saved) return saved;
      await ready;
      const message = validate();
      if (message) return { ok: false, problem: { title: message, detail: message } };
      if (mode() === "existing") {
        const d = datasetById(picker.value);
        const schemaId = (d.schemaRef || {}).id;
        saved = { ok: true, datasetId: d.id, schemaId, schemaTitle: schemaTitleOf(schemaId) };
        return saved;
      }
      let schema;
      if (schemaMode() === "new") {
        const built = await builder.save();
        if (!built.ok) return built;
        schema = built.schema;
      } else {
        schema = schemaById(schemaSelect.value);
      }
      const body = {
        name: name.value.trim(),
        description: description.value.trim(),
        schemaRef: { id: schema.$id, contentType: "application/vnd.adobe.xed-full+json;version=1" },
      };
      if (profileCapable() && profile.checked) body.tags = { unifiedProfile: ["enabled:true"] };
      const made = await HW.api("POST", CAT + "/dataSets", body);
      if (!made.ok) {
        const problem = made.data || { detail: "The server answered " + made.status };
        HW.showErrors(root, problem);
        return { ok: false, problem };
      }
      const datasetId = String((Array.isArray(made.data) ? made.data[0] : "") || "").split("/").pop();
      saved = { ok: true, datasetId, schemaId: schema.$id, schemaTitle: schema.title };
      root.setAttribute("data-saved", datasetId);
      return saved;
    }

    function describe() {
      if (mode() === "existing") {
        const d = datasetById(picker.value);
        return d ? "Existing dataset “" + (d.name || d.id) + "” (schema “" + schemaTitleOf((d.schemaRef || {}).id) + "”)" : "No dataset chosen yet";
      }
      const what = "New dataset “" + (name.value.trim() || "unnamed") + "”";
      const profileText = profileCapable() && profile.checked ? ", enabled for Profile" : "";
      if (schemaMode() === "new") return what + " with a new schema “" + ((builder && builder.title()) || "untitled") + "”" + profileText;
      const s = schemaById(schemaSelect.value);
      return what + (s ? " with schema “" + s.title + "”" : " (no schema chosen yet)") + profileText;
    }

    return { ready, validate, save, describe, element: root, builder: () => builder };
  }

  window.HWDatasetTarget = { mount };
})();
