/* Audiences: segment definitions (/data/core/ups/segment/definitions) with a live count and a preview of
 * their members (POST /data/core/ups/preview, GET /preview/{id}), the activation flows that send each one
 * to a destination (activations-audience.js), a segment job to record memberships
 * (POST /data/core/ups/segment/jobs), and a form to create one (PQL errors shown next to the field). */
(function () {
  "use strict";
  const { api, el, table, showErrors, clearErrors, toast } = window.HW;
  const AUD = window.HWAudienceActivations;

  function badge(state) {
    return el("span", { class: "badge " + (state || ""), text: state || "unknown" });
  }

  /* The activations of one audience: each flow's name (to its page), destination and state. */
  function activationsCell(found) {
    if (!found) return el("span", { class: "muted", text: "—" });
    if (!found.length) return el("span", { class: "muted", text: "none" });
    return el(
      "ul",
      { class: "plain activations" },
      found.map(({ flow, conn }) =>
        el("li", { dataset: { flow: flow.id } }, el("a", { href: "/console/activations/" + encodeURIComponent(flow.id), text: flow.name }), " to ", AUD.destinationLink(conn), " ", badge(flow.state))
      )
    );
  }

  async function preview(definition, cell, box) {
    const started = await api("POST", "/data/core/ups/preview", {
      predicateExpression: definition.expression.value,
      predicateType: "pql/text",
      predicateModel: "_xdm.context.profile",
      mergePolicyId: definition.mergePolicyId,
    });
    if (!started.ok) {
      cell.textContent = "—";
      toast(started.data);
      return null;
    }
    cell.textContent = String(started.data.estimatedSize);
    return started.data.previewId;
  }

  async function members(definition, id, box) {
    const page = await api("GET", `/data/core/ups/preview/${encodeURIComponent(id)}?limit=10`);
    if (!page.ok) return toast(page.data);
    const name = (e) => ((e.person || {}).name || {});
    box.replaceChildren(
      el("h2", { text: `Members of ${definition.name}` }),
      table(
        [
          { label: "Profile", value: (r) => r.entityId },
          { label: "First name", value: (r) => name(r.entity).firstName || "" },
          { label: "Last name", value: (r) => name(r.entity).lastName || "" },
          { label: "Identities", value: (r) => Object.entries(r.entity.identityMap || {}).map(([ns, ids]) => `${ns}: ${ids.map((i) => i.id).join(", ")}`).join("; ") },
        ],
        page.data.results,
        { empty: "No profile qualifies." }
      )
    );
  }

  async function load(list, box) {
    const listed = await api("GET", "/data/core/ups/segment/definitions?limit=100");
    if (!listed.ok) {
      list.setAttribute("aria-busy", "false");
      return list.replaceChildren(el("p", { class: "error", role: "alert", text: HW.problemText(listed.data) }));
    }
    const definitions = listed.data.segments || listed.data.children || [];
    const activations = await AUD.activationsOf(list.dataset.spec, definitions.map((d) => d.id));
    list.setAttribute("aria-busy", "false");
    if (!activations.ok) toast(activations.data);
    const counts = new Map();
    list.replaceChildren(
      table(
        [
          { label: "Name", value: (d) => d.name },
          { label: "PQL", value: (d) => el("code", { text: d.expression.value }) },
          { label: "Streaming", value: (d) => (d.evaluationInfo.continuous && d.evaluationInfo.continuous.enabled ? "yes" : "no") },
          { label: "Profiles now", value: (d) => { const cell = el("span", { class: "count", text: "…" }); counts.set(d.id, cell); return cell; } },
          { label: "Activations", value: (d) => activationsCell(activations.ok ? activations.bySegment[d.id] : null) },
          {
            label: "Actions",
            value: (d) => [
              el("button", { type: "button", "data-needs": "view-profiles", onclick: async () => {
                const id = await preview(d, counts.get(d.id), box);
                if (id) members(d, id, box);
              }, text: "Preview members" }),
              " ",
              el("button", { type: "button", "data-needs": "manage-segments", onclick: async () => {
                const job = await api("POST", "/data/core/ups/segment/jobs", { segments: [{ segmentId: d.id }] });
                toast(job.ok ? `Segment job ${job.data.id} started.` : job.data);
              }, text: "Run segment job" }),
            ],
          },
        ],
        definitions,
        { empty: "No audience yet." }
      )
    );
    list.querySelectorAll("tbody tr").forEach((tr, i) => definitions[i] && (tr.id = "audience-" + definitions[i].id));
    const linked = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if (linked) {
      linked.classList.add("linked");
      linked.setAttribute("tabindex", "-1");
      linked.scrollIntoView({ block: "center" });
      linked.focus({ preventScroll: true });
    }
    for (const d of definitions) preview(d, counts.get(d.id), box);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("audience-new");
    const list = document.getElementById("audience-list");
    const box = document.getElementById("audience-preview");
    if (!form) return;
    load(list, box);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const created = await api("POST", "/data/core/ups/segment/definitions", {
        name: form.name.value.trim(),
        expression: { type: "PQL", format: "pql/text", value: form.pql.value },
        schema: { name: "_xdm.context.profile" },
        evaluationInfo: { batch: { enabled: true }, continuous: { enabled: form.continuous.checked }, synchronous: { enabled: false } },
      });
      if (!created.ok) return showErrors(form, created.data);
      toast(`Audience ${created.data.name} created.`);
      form.reset();
      load(list, box);
    });
  });
})();
