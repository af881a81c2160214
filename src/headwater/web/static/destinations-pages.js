/* Destinations (document 003): the list, and a saved destination's page (facts, Test Request, Used by,
 * Delete). Shared pieces (icons, list paging, field errors, Test Request, facts) are in destinations.js. */
(function () {
  "use strict";

  const { api, el } = window.HW;
  const { FS, AUTH_LABELS, iconBox, listAll, showProblem, tester, requestFacts, authFacts, pages } = window.HWDestinations;

  /* --- the list ----------------------------------------------------------------------------- */

  async function initList(root) {
    const box = document.getElementById("dest-list");
    const search = document.getElementById("dest-search");
    const params = new URLSearchParams(location.search);
    if (params.get("deleted")) {
      window.HW.toast(`Destination “${params.get("deleted")}” deleted`);
      history.replaceState(null, "", location.pathname);
    }
    const result = await listAll(`${FS}/connections?property=connectionSpec.id==${root.dataset.spec}&orderby=name&limit=100`);
    box.removeAttribute("aria-busy");
    if (!result.ok) {
      box.replaceChildren();
      window.HW.showErrors(null, result.data);
      return;
    }
    function render() {
      const q = search.value.trim().toLowerCase();
      const rows = result.items.filter((c) => !q || (c.name + " " + (c.description || "")).toLowerCase().includes(q));
      const empty = q ? "No destination matches the search." : "No destinations yet: add one to send records to an external REST endpoint.";
      box.replaceChildren(
        window.HW.table(
          [
            { label: "Icon", value: (c) => iconBox(c.icon, 22) },
            {
              label: "Name",
              value: (c) =>
                el(
                  "span",
                  {},
                  el("a", { href: "/console/destinations/" + encodeURIComponent(c.id), text: c.name }),
                  c.state === "draft" ? [" ", el("span", { class: "badge draft", text: "Draft" })] : null
                ),
            },
            { label: "Description", value: (c) => c.description || "" },
            { label: "Authentication", value: (c) => AUTH_LABELS[(c.auth || {}).specName] || (c.auth || {}).specName || "None" },
            { label: "Created", value: (c) => window.HW.when(c.createdAt) },
          ],
          rows,
          { empty, caption: `${result.items.length} destination${result.items.length === 1 ? "" : "s"} in this sandbox` }
        )
      );
    }
    search.addEventListener("input", render);
    render();
  }

  /* --- a saved destination ------------------------------------------------------------------- */

  async function initDetail(root) {
    const id = root.dataset.connectionId;
    const box = document.getElementById("dest-detail");
    if (new URLSearchParams(location.search).get("saved")) {
      window.HW.toast("Destination saved");
      history.replaceState(null, "", location.pathname);
    }
    const [conn, targets] = await Promise.all([
      api("GET", `${FS}/connections/${encodeURIComponent(id)}`),
      listAll(`${FS}/targetConnections?property=baseConnectionId==${encodeURIComponent(id)}`),
    ]);
    box.removeAttribute("aria-busy");
    if (!conn.ok) {
      box.replaceChildren(el("p", { class: "muted", text: conn.status === 404 ? "There is no such destination in this sandbox." : "The destination could not be read." }));
      if (conn.status !== 404) window.HW.showErrors(null, conn.data);
      return;
    }
    const c = conn.data.items[0];
    if (c.connectionSpec.id !== root.dataset.spec) {
      box.replaceChildren(el("p", {}, "This connection is not a destination: see ", el("a", { href: "/console/sources", text: "Sources" }), "."));
      return;
    }
    document.getElementById("dest-heading").textContent = c.name;
    document.title = `${c.name} · Headwater`;
    const used = await Promise.all(targets.items.map((t) => listAll(`${FS}/flows?property=targetConnectionIds[]==${encodeURIComponent(t.id)}`)));
    const flows = used.flatMap((u) => u.items);

    const facts = el(
      "section",
      { class: "card", "aria-labelledby": "facts-h" },
      el("h2", { id: "facts-h", class: "named" }, iconBox(c.icon, 28), "Destination"),
      el(
        "dl",
        { class: "facts" },
        el("dt", { text: "Name" }),
        el("dd", { text: c.name }),
        el("dt", { text: "Description" }),
        el("dd", { text: c.description || "—" }),
        el("dt", { text: "Icon" }),
        el("dd", { text: c.icon || "api" }),
        el("dt", { text: "Connection ID" }),
        el("dd", {}, el("code", { text: c.id }), " ", window.HW.copyButton(c.id, "Copy ID")),
        el("dt", { text: "Created" }),
        el("dd", { text: `${window.HW.when(c.createdAt)}${c.createdBy ? " by " + c.createdBy : ""}` })
      ),
      el("h3", { class: "sub", text: "Authentication" }),
      authFacts(c.auth),
      c.state === "draft"
        ? draftNote(c, targets.items.length > 0)
        : el("p", { class: "note", role: "note", text: "A saved destination cannot be edited. To change it, add a new destination with the change, point its activation flows at the new one, then delete this one." })
    );
    const parts = [facts];
    for (const target of targets.items) {
      const testBox = el("div", { class: "tester" });
      const section = el("section", { class: "card", "aria-label": "Request" }, el("h2", { text: "Request" }), requestFacts(target.params || {}), testBox);
      parts.push(section);
      tester(testBox, {
        scope: section,
        request: () => target.params || {},
        run: (variables) => api("POST", `${FS}/targetConnections/${encodeURIComponent(target.id)}/test`, { variables }),
        problem: (data) => showProblem(section, data),
      });
    }
    if (!targets.items.length) parts.push(el("section", { class: "card" }, el("h2", { text: "Request" }), el("p", { class: "muted", text: "This destination has no request." })));
    parts.push(
      el(
        "section",
        { class: "card", "aria-labelledby": "used-h" },
        el("h2", { id: "used-h", text: "Used by" }),
        flows.length
          ? el("ul", { class: "plain" }, flows.map((f) => el("li", {}, el("a", { href: "/console/activations/" + encodeURIComponent(f.id), text: f.name }), " ", el("span", { class: "badge " + (f.state || ""), text: f.state || "" }))))
          : el("p", { class: "muted", text: "No activation flow sends to this destination." })
      )
    );
    parts.push(deleteSection(c));
    box.replaceChildren(...parts);
  }

  /* A draft (saved with ?mode=draft, through the API or an interrupted Save): unusable until published. */
  function draftNote(c, hasRequest) {
    const note = el("div", { class: "note", role: "note" }, el("p", { text: "This destination is a draft: no activation can use it until it is published, and once published it cannot be edited." }));
    if (!hasRequest) {
      note.append(el("p", { class: "muted", text: "It has no request yet: add one through the API (POST /targetConnections) before publishing, or delete it." }));
      return note;
    }
    const button = el("button", { type: "button", class: "primary", text: "Publish" });
    button.addEventListener("click", async () => {
      button.disabled = true;
      const answer = await api("POST", `${FS}/connections/${encodeURIComponent(c.id)}/action?op=publish`);
      if (!answer.ok) {
        button.disabled = false;
        window.HW.showErrors(null, answer.data);
        return;
      }
      location.assign(`/console/destinations/${encodeURIComponent(c.id)}?saved=1`);
    });
    note.append(button);
    return note;
  }

  function deleteSection(c) {
    const errors = el("div", { class: "general-errors", "data-errors": "", role: "alert", hidden: true });
    const outcome = el("div", { class: "delete-outcome", role: "alert" });
    const start = el("button", { type: "button", class: "danger", text: "Delete destination", "data-needs": "manage-destinations" });
    const confirmBox = el(
      "div",
      { class: "confirm", hidden: true },
      el("p", { text: `Delete “${c.name}” and its request? This cannot be undone.` })
    );
    const yes = el("button", { type: "button", class: "danger", text: "Yes, delete it" });
    const no = el("button", { type: "button", class: "secondary", text: "Cancel" });
    confirmBox.append(el("div", { class: "row" }, yes, no));
    const section = el("section", { class: "card", "aria-labelledby": "delete-h" }, el("h2", { id: "delete-h", text: "Delete" }), errors, outcome, start, confirmBox);
    start.addEventListener("click", () => {
      outcome.replaceChildren();
      confirmBox.hidden = false;
      start.hidden = true;
      no.focus();
    });
    no.addEventListener("click", () => {
      confirmBox.hidden = true;
      start.hidden = false;
      start.focus();
    });
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      const result = await api("DELETE", `${FS}/connections/${encodeURIComponent(c.id)}`);
      yes.disabled = false;
      confirmBox.hidden = true;
      start.hidden = false;
      if (result.ok) {
        location.assign("/console/destinations?deleted=" + encodeURIComponent(c.name));
        return;
      }
      if (result.status === 409) {
        const users = ((result.data && result.data.report && result.data.report.referencedBy) || []).filter((u) => u.type === "flow");
        const names = await Promise.all(
          users.map(async (u) => {
            const flow = await api("GET", `${FS}/flows/${encodeURIComponent(u.id)}`);
            return { id: u.id, name: flow.ok ? flow.data.items[0].name : u.id };
          })
        );
        outcome.replaceChildren(
          el("p", { class: "field-error", text: "The destination was not deleted: activation flows send to it. Delete those flows (or point them at another destination) first:" }),
          names.length
            ? el("ul", {}, names.map((f) => el("li", {}, el("a", { href: "/console/activations/" + encodeURIComponent(f.id), text: f.name }))))
            : el("p", { text: (result.data && result.data.detail) || "" })
        );
        start.focus();
        return;
      }
      window.HW.showErrors(section, result.data);
    });
    return section;
  }

  Object.assign(pages, { list: initList, detail: initDetail });
})();
