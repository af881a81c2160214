/* Audience activations: activation flows whose source is the profiles and whose GeneralTransform selects one
 * segment definition (docs/api.md, "Activating an audience"). What the Audiences page and an activation's
 * page share: the audience a flow selects, the flows that activate some audiences (one filtered Flow
 * Service list, ?property=transformations[].params.segmentSelectors.selectors[].value.id==…), their
 * destinations, and a run's deliveries split by request (metrics.deliverySummary.requests: the first
 * target connection is sent when a profile enters, the second, if any, when it exits).
 * Needs app.js (HW) and destinations.js (HWDestinations: icons, list paging). */
(function () {
  "use strict";

  const FS = "/data/foundation/flowservice";
  const SELECTOR = "transformations[].params.segmentSelectors.selectors[].value.id";
  const CHUNK = 40; // ids per filtered list call: keeps the URL short
  const { api, el } = window.HW;

  /* The GeneralTransform of a flow that activates the audience `segmentId` (what segmentOf reads back). */
  function selection(segmentId) {
    return {
      name: "GeneralTransform",
      params: { segmentSelectors: { selectors: [{ type: "PLATFORM_SEGMENT", value: { id: segmentId } }] }, profileSelectors: { selectors: [] } },
    };
  }

  /* The segment definition id a flow selects (its GeneralTransform's first selector), or null. */
  function segmentOf(flow) {
    const general = (flow.transformations || []).find((t) => t.name === "GeneralTransform");
    const selectors = (((general || {}).params || {}).segmentSelectors || {}).selectors || [];
    const value = selectors.length ? selectors[0].value || {} : {};
    return typeof value.id === "string" ? value.id : null;
  }

  function chunks(items) {
    const out = [];
    for (let i = 0; i < items.length; i += CHUNK) out.push(items.slice(i, i + CHUNK));
    return out;
  }

  /* Every item of `path` filtered by `property` == each of `ids` (several calls of CHUNK ids). */
  async function listByIds(path, property, ids, extra) {
    const { listAll } = window.HWDestinations;
    const items = [];
    for (const part of chunks([...new Set(ids)])) {
      const query = `property=${property}==${part.map(encodeURIComponent).join(",")}` + (extra ? "&" + extra : "");
      const result = await listAll(`${FS}/${path}?${query}&limit=1000`);
      if (!result.ok) return result;
      items.push(...result.items);
    }
    return { ok: true, items };
  }

  /* The destination (base connection) of each flow, by flow id: its first request's connection. */
  async function destinationsOf(flows) {
    const targetIds = flows.map((f) => (f.targetConnectionIds || [])[0]).filter(Boolean);
    if (!targetIds.length) return { ok: true, byFlow: {} };
    const targets = await listByIds("targetConnections", "id", targetIds);
    if (!targets.ok) return targets;
    const connections = await listByIds("connections", "id", targets.items.map((t) => t.baseConnectionId).filter(Boolean));
    if (!connections.ok) return connections;
    const targetById = Object.fromEntries(targets.items.map((t) => [t.id, t]));
    const connById = Object.fromEntries(connections.items.map((c) => [c.id, c]));
    const byFlow = {};
    for (const flow of flows) {
      const target = targetById[(flow.targetConnectionIds || [])[0]];
      byFlow[flow.id] = target ? connById[target.baseConnectionId] || null : null;
    }
    return { ok: true, byFlow };
  }

  /* {ok, bySegment: {segmentId: [{flow, conn}]}} for the activation flows (flow spec `spec`) of `segmentIds`. */
  async function activationsOf(spec, segmentIds) {
    const bySegment = Object.fromEntries(segmentIds.map((id) => [id, []]));
    if (!segmentIds.length) return { ok: true, bySegment };
    const flows = await listByIds("flows", SELECTOR, segmentIds, `property=flowSpec.id==${encodeURIComponent(spec)}&orderby=name`);
    if (!flows.ok) return flows;
    const destinations = await destinationsOf(flows.items);
    if (!destinations.ok) return destinations;
    for (const flow of flows.items) {
      const id = segmentOf(flow);
      if (bySegment[id]) bySegment[id].push({ flow, conn: destinations.byFlow[flow.id] });
    }
    return { ok: true, bySegment };
  }

  /* A destination's name with its icon, linked to its page. */
  function destinationLink(conn) {
    const { iconBox } = window.HWDestinations;
    if (!conn) return el("span", { class: "muted", text: "unknown destination" });
    return el("span", { class: "named" }, iconBox(conn.icon, 18), el("a", { href: "/console/destinations/" + encodeURIComponent(conn.id), text: conn.name }));
  }

  /* Delivered and dead-lettered of a run (or of several runs) for the request `targetId`. */
  function byRequest(runs, targetId) {
    const out = { delivered: 0, deadLettered: 0 };
    for (const run of runs) {
      const rows = ((run.metrics || {}).deliverySummary || {}).requests || [];
      for (const row of rows) {
        if (row.targetConnectionId !== targetId) continue;
        out.delivered += Number(row.delivered || 0);
        out.deadLettered += Number(row.deadLettered || 0);
      }
    }
    return out;
  }

  /* What an audience activation's page adds: its audience's name and its exit request (null when exits
   * send nothing). */
  async function describe(flow) {
    const segmentId = segmentOf(flow);
    if (!segmentId) return null;
    const exitId = (flow.targetConnectionIds || [])[1];
    const [definition, exit] = await Promise.all([
      api("GET", `/data/core/ups/segment/definitions/${encodeURIComponent(segmentId)}`),
      exitId ? api("GET", `${FS}/targetConnections/${encodeURIComponent(exitId)}`) : null,
    ]);
    return {
      segmentId,
      name: definition.ok ? definition.data.name : null,
      enterId: (flow.targetConnectionIds || [])[0],
      exitId: exitId || null,
      exit: exit && exit.ok ? exit.data.items[0] : null,
    };
  }

  /* The audience's name linked to the Audiences page (the id when it cannot be read). */
  function audienceLink(audience) {
    return el("a", { href: "/console/audiences#audience-" + encodeURIComponent(audience.segmentId), text: audience.name || audience.segmentId });
  }

  window.HWAudienceActivations = { selection, segmentOf, activationsOf, destinationLink, byRequest, describe, audienceLink };
})();
