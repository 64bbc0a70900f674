// The built-in dashboard: reads one experiment from the public API with the read token
// and redraws every panel every few seconds. The page itself holds no data.
"use strict";

(() => {
  const REFRESH_MS = 5000;
  const TOKEN_KEY = "cineamate.readToken";
  const EVENTS_PER_PAGE = 25;
  const ARMS_SHOWN = 20;
  // The guardrails service answers these until it has something to say (or is not there).
  const NO_GUARDRAIL_DATA = new Set([404, 501, 502, 503, 504]);
  const { PALETTE, histogram, lineChart } = window.CineaCharts;

  const $ = (id) => document.getElementById(id);
  const state = {
    token: null,
    experimentId: null,
    measure: "cumulative_reward",
    cohortBy: "user_type",
    armsVariant: "",
    eventType: "serve",
    eventVariant: "",
    cursors: [null],
    nextCursor: null,
    paused: false,
    timer: null,
    running: null,
    colors: new Map(),
    last: {},
  };

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }

    get unauthorised() {
      return this.status === 401 || this.status === 403;
    }
  }

  // ---- API --------------------------------------------------------------------------

  async function api(path, params = {}) {
    const url = new URL(path, window.location.origin);
    for (const [key, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
    }
    const headers = { Accept: "application/json" };
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    let response;
    try {
      response = await fetch(url, { headers, cache: "no-store" });
    } catch (error) {
      throw new ApiError(0, `the platform is unreachable (${error.message})`);
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try {
        const body = await response.json();
        if (body && body.error && body.error.message) message = body.error.message;
      } catch {
        // Not JSON: the status line says enough.
      }
      throw new ApiError(response.status, message);
    }
    return response;
  }

  const getJson = async (path, params) => (await api(path, params)).json();
  const experimentPath = (suffix) => `/api/experiments/${encodeURIComponent(state.experimentId)}/${suffix}`;

  // ---- DOM and formatting helpers ---------------------------------------------------

  function h(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (value === false || value === null || value === undefined) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const empty = (message) => h("p", { class: "empty" }, message);
  const failed = (error) => h("p", { class: "error", role: "alert" }, `Could not load: ${error.message}`);
  const isNumber = (value) => typeof value === "number" && Number.isFinite(value);
  const integer = (value) => (isNumber(value) ? Math.round(value).toLocaleString("en") : "—");
  const decimal = (value, digits = 3) => (isNumber(value) ? value.toFixed(digits) : "—");
  const percent = (value, digits = 1) => (isNumber(value) ? `${(value * 100).toFixed(digits)}%` : "—");
  const signed = (value) => (isNumber(value) ? `${value > 0 ? "+" : value < 0 ? "−" : ""}${Math.abs(value * 100).toFixed(1)}%` : "—");
  const milliseconds = (value) => (isNumber(value) ? `${value < 10 ? value.toFixed(1) : Math.round(value)} ms` : "—");

  function moment(value) {
    const time = Date.parse(value);
    return Number.isNaN(time) ? plain(value) : new Date(time).toLocaleString();
  }

  function interval(value, format) {
    if (!value || !isNumber(value.estimate)) return "—";
    const range = isNumber(value.low) && isNumber(value.high) ? ` (${format(value.low)} to ${format(value.high)})` : "";
    return `${format(value.estimate)}${range}`;
  }

  function plain(value) {
    if (value === null || value === undefined) return "—";
    if (Array.isArray(value)) return value.map(plain).join(", ");
    if (typeof value === "object") return Object.entries(value).map(([key, item]) => `${key}=${plain(item)}`).join(" ");
    if (isNumber(value) && !Number.isInteger(value)) return `${+value.toPrecision(4)}`;
    return String(value);
  }

  function colorOf(variant) {
    if (!state.colors.has(variant)) state.colors.set(variant, PALETTE[state.colors.size % PALETTE.length]);
    return state.colors.get(variant);
  }

  function variantLabel(name, extra) {
    const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.background = colorOf(name);
    return h("span", { class: "variant" }, swatch, name, extra ? h("span", { class: "tag" }, extra) : null);
  }

  /** columns: [{label, cell: row => Node|string, numeric?}] */
  function table(caption, columns, rows, rowClass) {
    const head = h("tr", {}, columns.map((column) => h("th", { scope: "col", class: column.numeric ? "num" : null }, column.label)));
    const body = rows.map((row) =>
      h("tr", { class: rowClass ? rowClass(row) : null }, columns.map((column) => h("td", { class: column.numeric ? "num" : null }, column.cell(row)))),
    );
    return h("table", {}, h("caption", { class: "visually-hidden" }, caption), h("thead", {}, head), h("tbody", {}, body));
  }

  function fill(id, ...nodes) {
    $(id).replaceChildren(...nodes);
  }

  function setOptions(select, values, current, allLabel) {
    const options = (allLabel ? [["", allLabel]] : []).concat(values.map((value) => [value, value]));
    const same = select.options.length === options.length && options.every(([value], index) => select.options[index].value === value);
    if (!same) select.replaceChildren(...options.map(([value, label]) => h("option", { value }, label)));
    select.value = options.some(([value]) => value === current) ? current : options.length ? options[0][0] : "";
  }

  function notice(message) {
    const box = $("notice");
    box.hidden = !message;
    box.textContent = message || "";
  }

  // ---- Panels -----------------------------------------------------------------------

  function card(label, value, detail) {
    return h("div", { class: "card" }, h("h3", {}, label), h("p", { class: "value" }, value), h("p", { class: "detail" }, detail));
  }

  function trafficCard(summary) {
    const { configured, observed } = summary.traffic;
    const rows = summary.variants.map((variant) => {
      const bar = (share, kind) => {
        const span = h("span", { class: `share ${kind}` });
        span.style.width = `${Math.max(0, Math.min(1, share || 0)) * 100}%`;
        span.style.background = colorOf(variant.variant);
        return h("span", { class: "track" }, span);
      };
      return h(
        "div",
        { class: "split" },
        variantLabel(variant.variant),
        h("span", { class: "split-bars" }, bar(configured[variant.variant], "configured"), bar(observed[variant.variant], "observed")),
        h("span", { class: "num" }, `${percent(configured[variant.variant], 0)} / ${percent(observed[variant.variant], 0)}`),
      );
    });
    return h("div", { class: "card wide" }, h("h3", {}, "Traffic split (configured / observed)"), ...rows);
  }

  function renderSummary(summary) {
    const { totals, users } = summary;
    const status = $("experiment-status");
    status.hidden = false;
    status.textContent = summary.status;
    status.className = `badge status-${summary.status}`;
    fill(
      "cards",
      card("Serves", integer(totals.serves), `${integer(totals.errors)} errors`),
      card("Rewards", integer(totals.rewards), `${integer(totals.clicks)} clicks, ${integer(totals.late_clicks)} late`),
      card("Users", integer(users.total), `${integer(users.active)} active in ${users.active_window_hours} h`),
      card("CTR", percent(totals.rewards ? totals.clicks / totals.rewards : null, 2), "clicks per rewarded item"),
      trafficCard(summary),
    );
    const columns = [
      { label: "Variant", cell: (v) => variantLabel(v.variant, v.control ? "control" : null) },
      { label: "Policy", cell: (v) => v.policy_type || "—" },
      { label: "Users", numeric: true, cell: (v) => integer(v.users) },
      { label: "Active", numeric: true, cell: (v) => integer(v.active_users) },
      { label: "Serves", numeric: true, cell: (v) => integer(v.serves) },
      { label: "Rewards", numeric: true, cell: (v) => integer(v.rewards) },
      { label: "Clicks", numeric: true, cell: (v) => integer(v.clicks) },
      { label: "CTR (95% interval)", numeric: true, cell: (v) => interval(v.ctr, (x) => percent(x, 2)) },
      {
        label: "Uplift vs control",
        numeric: true,
        cell: (v) => {
          if (v.control) return "—";
          const uplift = v.uplift || {};
          const kind = uplift.low > 0 ? "better" : uplift.high < 0 ? "worse" : null;
          return h("span", { class: kind }, interval(uplift, signed));
        },
      },
    ];
    fill("variants", summary.variants.length ? table("Variants", columns, summary.variants) : empty("No variants."));
    const names = summary.variants.map((variant) => variant.variant);
    setOptions($("arms-variant"), names, state.armsVariant, "all");
    setOptions($("event-variant"), names, state.eventVariant, "all");
  }

  function renderTimeseries(data) {
    const container = $("reward-chart");
    const last = new Map();
    const series = new Map();
    for (const point of data.points) {
      const x = Date.parse(point.time);
      for (const [variant, values] of Object.entries(point.variants)) last.set(variant, values[state.measure]);
      for (const [variant, value] of last) {
        if (!series.has(variant)) series.set(variant, { name: variant, color: colorOf(variant), points: [] });
        series.get(variant).points.push({ x, y: value || 0 });
      }
    }
    if (!series.size) {
      container.replaceChildren(empty("No rewards yet: the chart starts with the first served item."));
      return;
    }
    const measure = state.measure === "cumulative_reward" ? "cumulative reward (clicks)" : "cumulative regret (clicks)";
    const order = [...state.colors.keys()];
    const ordered = [...series.values()].sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
    lineChart(container, ordered, { label: `${measure} per policy over time` });
  }

  function renderLatency(data) {
    const variants = data.variants.filter((variant) => variant.serves > 0);
    if (!variants.length) {
      fill("latency-chart", empty("No serves yet."));
      fill("latency-table");
      return;
    }
    const series = variants.map((variant) => ({
      name: variant.variant,
      color: colorOf(variant.variant),
      bins: variant.histogram.map((bucket) => {
        // Bucket bounds grow by 20%; the last bucket is open-ended.
        const high = bucket.le_ms === null ? 12000 : bucket.le_ms;
        return { low: bucket.le_ms === null ? 10000 : high / 1.2, high, share: bucket.count / variant.serves };
      }),
    }));
    const marker = isNumber(data.sla_ms) ? { value: data.sla_ms, label: `SLA ${data.sla_ms} ms` } : null;
    histogram($("latency-chart"), series, { label: `Latency distribution per policy, SLA ${data.sla_ms} ms`, marker });
    const columns = [
      { label: "Variant", cell: (v) => variantLabel(v.variant) },
      { label: "p50", numeric: true, cell: (v) => milliseconds(v.p50_ms) },
      { label: "p95", numeric: true, cell: (v) => h("span", { class: v.p95_ms > data.sla_ms ? "worse" : null }, milliseconds(v.p95_ms)) },
      { label: "p99", numeric: true, cell: (v) => milliseconds(v.p99_ms) },
      { label: "Mean", numeric: true, cell: (v) => milliseconds(v.mean_ms) },
      { label: "Within SLA", numeric: true, cell: (v) => percent(v.within_sla) },
    ];
    fill("latency-table", table("Latency percentiles", columns, variants));
  }

  async function loadCohorts() {
    let data = await getJson(experimentPath("cohorts"), { by: state.cohortBy });
    if (data.attributes.length && !data.attributes.includes(state.cohortBy)) {
      state.cohortBy = data.attributes[0];
      data = await getJson(experimentPath("cohorts"), { by: state.cohortBy });
    }
    return data;
  }

  function renderCohorts(data) {
    setOptions($("cohort-by"), data.attributes.length ? data.attributes : [state.cohortBy], state.cohortBy);
    if (!data.variants.length) {
      fill("cohorts", empty(data.attributes.length ? `No rewards by ${data.by} yet.` : "No cohort attributes yet: serves carry them."));
      return;
    }
    const values = [...new Set(data.variants.flatMap((variant) => variant.cohorts.map((cohort) => cohort.value)))].sort();
    const cell = (variant, value) => {
      const cohort = variant.cohorts.find((item) => item.value === value);
      if (!cohort) return "—";
      const { estimate, low, high } = cohort.ctr;
      return h(
        "span",
        { class: "stacked" },
        percent(estimate, 1),
        h("small", { class: "muted" }, `${percent(low, 0)} to ${percent(high, 0)}, n=${integer(cohort.rewards)}`),
      );
    };
    const columns = [
      { label: data.by, cell: (value) => h("span", {}, value) },
      ...data.variants.map((variant) => ({ label: variantLabel(variant.variant), numeric: true, cell: (value) => cell(variant, value) })),
    ];
    const fairness = h(
      "tr",
      { class: "fairness" },
      h("th", { scope: "row" }, "Fairness (CV of CTR)"),
      data.variants.map((variant) => h("td", { class: "num" }, decimal(variant.fairness_cv))),
    );
    const rendered = table(`CTR by ${data.by}`, columns, values);
    rendered.append(h("tfoot", {}, fairness));
    fill(
      "cohorts",
      rendered,
      h("p", { class: "muted note" }, "Fairness is the coefficient of variation of CTR across cohort values: 0 is even, higher is less even."),
    );
  }

  function renderArms(data) {
    const rows = data.variants.flatMap((variant) => variant.arms.map((arm) => ({ variant: variant.variant, ...arm })));
    if (!rows.length) {
      fill("arms", empty("No arms served yet."));
      return;
    }
    const columns = [
      { label: "Variant", cell: (arm) => variantLabel(arm.variant) },
      { label: "Item", numeric: true, cell: (arm) => String(arm.item_id) },
      { label: "Serves", numeric: true, cell: (arm) => integer(arm.serves) },
      { label: "Share", numeric: true, cell: (arm) => percent(arm.share_of_serves) },
      { label: "Pulls", numeric: true, cell: (arm) => integer(arm.pulls) },
      { label: "Clicks", numeric: true, cell: (arm) => integer(arm.clicks) },
      { label: "CTR", numeric: true, cell: (arm) => percent(arm.ctr) },
      { label: "Posterior mean", numeric: true, cell: (arm) => decimal(arm.posterior_mean) },
      {
        label: "Anomaly",
        cell: (arm) => (arm.anomaly ? h("span", { class: "flag" }, h("strong", {}, "⚠ anomaly "), arm.anomaly_reason || "") : h("span", { class: "muted" }, "none")),
      },
    ];
    fill("arms", table("Most served arms", columns, rows, (arm) => (arm.anomaly ? "anomalous" : null)));
  }

  async function loadGuardrails() {
    try {
      const response = await api(experimentPath("guardrails"));
      return response.status === 204 ? null : await response.json();
    } catch (error) {
      if (error instanceof ApiError && NO_GUARDRAIL_DATA.has(error.status)) return null;
      throw error;
    }
  }

  function renderGuardrails(data) {
    const checks = Array.isArray(data) ? data : (data && (data.guardrails || data.checks)) || [];
    const rollbacks = (data && !Array.isArray(data) && data.rollbacks) || [];
    if (!checks.length && !rollbacks.length) {
      fill("guardrails", empty("No guardrail data yet: checks and rollbacks appear here once the guardrails service reports them."));
      return;
    }
    const status = (check) => {
      const value = String(check.status || "unknown");
      return h("span", { class: `badge status-${value === "ok" ? "ok" : value === "breach" ? "breach" : "unknown"}` }, value);
    };
    const name = (item) => item.name || item.guardrail || item.metric || "—";
    const parts = [];
    if (checks.length) {
      parts.push(
        table("Guardrail status", [
          { label: "Guardrail", cell: name },
          { label: "Variant", cell: (check) => (check.variant ? variantLabel(check.variant) : "all") },
          { label: "Status", cell: status },
          { label: "Observed", numeric: true, cell: (check) => plain(check.observed) },
          { label: "Threshold", numeric: true, cell: (check) => plain(check.threshold) },
        ], checks, (check) => (check.status === "breach" ? "anomalous" : null)),
      );
    }
    parts.push(h("h3", {}, "Rollback history"));
    parts.push(
      rollbacks.length
        ? table("Rollback history", [
          { label: "When", cell: (rollback) => moment(rollback.at || rollback.rolled_back_at) },
          { label: "Variant", cell: (rollback) => (rollback.variant ? variantLabel(rollback.variant) : "—") },
          { label: "Guardrail", cell: name },
          { label: "Observed", numeric: true, cell: (rollback) => plain(rollback.observed) },
          { label: "Threshold", numeric: true, cell: (rollback) => plain(rollback.threshold) },
        ], rollbacks)
        : empty("No rollbacks."),
    );
    fill("guardrails", ...parts);
  }

  const loadEvents = () =>
    getJson(experimentPath("events"), {
      type: state.eventType,
      variant: state.eventVariant,
      cursor: state.cursors.at(-1),
      limit: EVENTS_PER_PAGE,
    });

  function renderEvents(data) {
    state.nextCursor = data.next_cursor;
    $("events-first").disabled = state.cursors.length === 1;
    $("events-previous").disabled = state.cursors.length === 1;
    $("events-next").disabled = !data.next_cursor;
    $("events-page").textContent = `page ${state.cursors.length}, oldest first`;
    if (!data.events.length) {
      fill("events", empty(`No ${state.eventType.replace("_", " ")} events${state.cursors.length > 1 ? " on this page" : " yet"}.`));
      return;
    }
    const columns = Object.keys(data.events[0]).map((key) => ({ label: key, cell: (event) => plain(event[key]) }));
    fill("events", table("Events", columns, data.events));
  }

  // ---- Refresh loop -----------------------------------------------------------------

  const PANELS = [
    { id: "cards", load: () => getJson(experimentPath("summary")), render: renderSummary },
    { id: "reward-chart", load: () => getJson(experimentPath("timeseries")), render: renderTimeseries, key: "timeseries" },
    { id: "latency-chart", load: () => getJson(experimentPath("latency")), render: renderLatency, key: "latency" },
    { id: "cohorts", load: loadCohorts, render: renderCohorts },
    { id: "arms", load: () => getJson(experimentPath("arms"), { variant: state.armsVariant, limit: ARMS_SHOWN }), render: renderArms },
    { id: "guardrails", load: loadGuardrails, render: renderGuardrails },
    { id: "events", load: loadEvents, render: renderEvents },
  ];

  async function loadPanels(panels) {
    const experimentId = state.experimentId;
    const results = await Promise.allSettled(panels.map((panel) => panel.load()));
    if (experimentId !== state.experimentId) return;
    const denied = results.find((result) => result.status === "rejected" && result.reason instanceof ApiError && result.reason.unauthorised);
    if (denied) throw denied.reason;
    panels.forEach((panel, index) => {
      const result = results[index];
      if (result.status === "fulfilled") {
        if (panel.key) state.last[panel.key] = result.value;
        panel.render(result.value);
      } else {
        fill(panel.id, failed(result.reason));
      }
    });
  }

  async function loadExperiments() {
    const experiments = await getJson("/api/experiments");
    const select = $("experiment");
    select.disabled = !experiments.length;
    if (!experiments.length) {
      select.replaceChildren(h("option", { value: "" }, "no experiments"));
      state.experimentId = null;
      return;
    }
    const wanted = state.experimentId || new URL(window.location.href).searchParams.get("experiment");
    const chosen =
      experiments.find((experiment) => experiment.id === wanted) ||
      experiments.find((experiment) => experiment.status === "running") ||
      experiments[0];
    const options = experiments.map((experiment) => h("option", { value: experiment.id }, `${experiment.name} (${experiment.status})`));
    const same = select.options.length === options.length && options.every((option, index) => select.options[index].value === option.value && select.options[index].text === option.text);
    if (!same) select.replaceChildren(...options);
    select.value = chosen.id;
    if (chosen.id !== state.experimentId) chooseExperiment(chosen.id);
  }

  function chooseExperiment(id) {
    state.experimentId = id;
    state.cursors = [null];
    state.last = {};
    const url = new URL(window.location.href);
    url.searchParams.set("experiment", id);
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }

  function run(task) {
    // One refresh at a time: a later request waits for the one in flight, then runs.
    state.running = (state.running || Promise.resolve()).then(task).catch(handleFailure);
    return state.running;
  }

  async function refresh() {
    window.clearTimeout(state.timer);
    await loadExperiments();
    if (!state.experimentId) {
      notice("No experiments yet: create one with `cineamate experiment create` or POST /api/experiments.");
      $("main").hidden = true;
    } else {
      $("main").hidden = false;
      await loadPanels(PANELS);
      notice(null);
    }
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    schedule();
  }

  function schedule() {
    window.clearTimeout(state.timer);
    if (!state.paused && !document.hidden) state.timer = window.setTimeout(() => run(refresh), REFRESH_MS);
  }

  function handleFailure(error) {
    if (error instanceof ApiError && error.unauthorised) {
      askForToken(state.token ? "That token was refused: enter the read token." : "Enter the read token to open the dashboard.");
      return;
    }
    notice(`Could not refresh: ${error.message}. Trying again in ${REFRESH_MS / 1000} s.`);
    schedule();
  }

  // ---- Token ------------------------------------------------------------------------

  function takeTokenFromAddress() {
    const url = new URL(window.location.href);
    const token = url.searchParams.get("token");
    if (token !== null) {
      // Out of the address bar, the history and any bookmark as soon as it is read.
      url.searchParams.delete("token");
      window.history.replaceState(null, "", url.pathname + url.search + url.hash);
      if (token) window.sessionStorage.setItem(TOKEN_KEY, token);
    }
    state.token = window.sessionStorage.getItem(TOKEN_KEY);
  }

  function askForToken(message) {
    window.clearTimeout(state.timer);
    $("main").hidden = true;
    $("forget-token").hidden = true;
    $("token-form").hidden = false;
    notice(message);
    $("token").focus();
  }

  function start() {
    $("token-form").hidden = true;
    $("forget-token").hidden = !state.token;
    run(refresh);
  }

  // ---- Controls ---------------------------------------------------------------------

  function exportFilename(response) {
    const disposition = response.headers.get("Content-Disposition") || "";
    const match = /filename="?([^";]+)"?/.exec(disposition);
    return match ? match[1] : `${state.experimentId}-${state.eventType}s.csv`;
  }

  async function exportCsv() {
    // A plain link cannot carry the bearer header: fetch, then hand the bytes over as a file.
    const button = $("export");
    const status = $("export-status");
    button.disabled = true;
    status.textContent = "exporting…";
    try {
      const response = await api(experimentPath("export"), { type: state.eventType, variant: state.eventVariant });
      const blob = await response.blob();
      const name = exportFilename(response);
      const url = URL.createObjectURL(blob);
      const link = h("a", { href: url, download: name, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
      status.textContent = `downloaded ${name} (${blob.size.toLocaleString("en")} bytes)`;
    } catch (error) {
      status.textContent = `export failed: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  }

  function reloadEvents() {
    run(() => loadPanels(PANELS.filter((panel) => panel.id === "events")));
  }

  function redrawCharts() {
    if (state.last.timeseries) renderTimeseries(state.last.timeseries);
    if (state.last.latency) renderLatency(state.last.latency);
  }

  function wireControls() {
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.token = $("token").value.trim();
      $("token").value = "";
      window.sessionStorage.setItem(TOKEN_KEY, state.token);
      notice(null);
      start();
    });
    $("forget-token").addEventListener("click", () => {
      window.sessionStorage.removeItem(TOKEN_KEY);
      state.token = null;
      askForToken("Enter the read token.");
    });
    $("experiment").addEventListener("change", (event) => {
      chooseExperiment(event.target.value);
      run(refresh);
    });
    $("pause").addEventListener("click", (event) => {
      state.paused = !state.paused;
      event.target.setAttribute("aria-pressed", String(state.paused));
      event.target.textContent = state.paused ? "Resume refresh" : "Pause refresh";
      if (state.paused) window.clearTimeout(state.timer);
      else run(refresh);
    });
    for (const button of document.querySelectorAll("[data-measure]")) {
      button.addEventListener("click", () => {
        state.measure = button.dataset.measure;
        for (const other of document.querySelectorAll("[data-measure]")) {
          other.setAttribute("aria-pressed", String(other === button));
        }
        $("reward-title").textContent = state.measure === "cumulative_reward" ? "Cumulative reward" : "Cumulative regret";
        redrawCharts();
      });
    }
    $("cohort-by").addEventListener("change", (event) => {
      state.cohortBy = event.target.value;
      run(() => loadPanels(PANELS.filter((panel) => panel.id === "cohorts")));
    });
    $("arms-variant").addEventListener("change", (event) => {
      state.armsVariant = event.target.value;
      run(() => loadPanels(PANELS.filter((panel) => panel.id === "arms")));
    });
    $("event-type").addEventListener("change", (event) => {
      state.eventType = event.target.value;
      state.cursors = [null];
      reloadEvents();
    });
    $("event-variant").addEventListener("change", (event) => {
      state.eventVariant = event.target.value;
      state.cursors = [null];
      reloadEvents();
    });
    $("events-next").addEventListener("click", () => {
      if (!state.nextCursor) return;
      state.cursors.push(state.nextCursor);
      reloadEvents();
    });
    $("events-previous").addEventListener("click", () => {
      if (state.cursors.length > 1) state.cursors.pop();
      reloadEvents();
    });
    $("events-first").addEventListener("click", () => {
      state.cursors = [null];
      reloadEvents();
    });
    $("export").addEventListener("click", exportCsv);
    document.addEventListener("visibilitychange", () => {
      // No requests while nobody can see the page; fresh figures as soon as someone can.
      if (document.hidden) window.clearTimeout(state.timer);
      else if (!state.paused && $("token-form").hidden) run(refresh);
    });
    let resizing = null;
    window.addEventListener("resize", () => {
      window.clearTimeout(resizing);
      resizing = window.setTimeout(redrawCharts, 150);
    });
  }

  takeTokenFromAddress();
  wireControls();
  start();
})();
