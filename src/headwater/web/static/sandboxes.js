/* Sandboxes (organization admins): the organization's sandboxes and a form that creates one, through
 * /data/foundation/sandbox-management/sandboxes with HW.api like any other client. The header's sandbox
 * picker reads the same list when a page loads: after a create, the page says so and offers a reload. */
(function () {
  "use strict";

  const { api, el } = HW;
  const SANDBOXES = "/data/foundation/sandbox-management/sandboxes";
  const root = document.getElementById("sandboxes");
  if (!root) return;
  const list = document.getElementById("sandbox-list");
  const listErrors = document.getElementById("sandbox-list-errors");
  const form = document.getElementById("sandbox-new");
  const created = document.getElementById("sandbox-created");
  let fresh = null; // the name of the sandbox just created

  function render(sandboxes) {
    const columns = [
      { label: "Name", value: (s) => el("code", { text: s.name }) },
      { label: "Title", value: (s) => s.title || "" },
      { label: "Type", value: (s) => (s.type === "production" ? "Production" : "Development") },
      { label: "Default", value: (s) => (s.isDefault ? "Yes" : "") },
      { label: "Created", value: (s) => HW.when(s.createdDate) },
    ];
    const count = sandboxes.length;
    const table = HW.table(columns, sandboxes, { caption: `${count} sandbox${count === 1 ? "" : "es"}`, empty: "No sandboxes." });
    table.querySelectorAll("tbody tr").forEach((tr, i) => {
      if (!sandboxes[i]) return;
      tr.dataset.sandbox = sandboxes[i].name;
      if (sandboxes[i].name === fresh) tr.classList.add("fresh");
    });
    list.replaceChildren(table);
  }

  async function load() {
    const result = await api("GET", SANDBOXES);
    list.removeAttribute("aria-busy");
    if (!result.ok) {
      list.replaceChildren();
      HW.showErrors(listErrors.parentElement, result.data);
      return;
    }
    render(result.data.sandboxes || []);
  }

  /* The API's refusals as field errors: validation errors name their fields already; a name that is taken
   * (409) or malformed (report.field) is said next to the name. */
  function problemOf(result) {
    const data = result.data || {};
    if (data.report && data.report.errors) return data;
    if (result.status === 409) return { report: { errors: [{ path: "name", message: "is already the name of a sandbox of this organization: choose another" }] } };
    if (data.report && data.report.field) return { report: { errors: [{ path: data.report.field, message: data.detail || data.title }] } };
    return data;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    HW.clearErrors(form);
    const name = form.querySelector("#s-name").value.trim();
    const title = form.querySelector("#s-title").value.trim();
    const type = form.querySelector('input[name="s-type"]:checked').value;
    if (!name) return HW.showErrors(form, { report: { errors: [{ path: "name", message: "is required: 1-63 lowercase letters, digits and hyphens" }] } });
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const body = { name, type };
    if (title) body.title = title;
    const result = await api("POST", SANDBOXES, body);
    button.disabled = false;
    if (!result.ok) return HW.showErrors(form, problemOf(result));
    fresh = result.data.name;
    form.reset();
    await load();
    created.hidden = false;
    created.replaceChildren(
      `Sandbox ${fresh} is created. The sandbox picker in the header offers it once the page is reloaded. `,
      el("button", { type: "button", class: "link", text: "Reload now", onclick: () => location.reload() })
    );
  });

  load();
})();
