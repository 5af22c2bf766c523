/* Genesys dashboard: polls GET /v1/dashboard/snapshot (and GET /v1/alerts) and draws the page.
 *
 * Everything from the server is written with textContent or as SVG attributes, never as HTML.
 * The API key lives in sessionStorage and goes out only as a Bearer token to this origin.
 * body[data-state]: "loading", "auth" (a key is needed), "denied" (the key's role is too low),
 * "ready"; body[data-renders]: how many snapshots were drawn (tests wait on both).
 */
(function () {
  "use strict";

  const POLL_MS = 5000;
  const KEY_STORAGE = "genesys.dashboard.key";
  const { svg, html, lineChart, barChart } = window.GenesysCharts;

  const KPI_LABELS = {
    success_rate: "Success rate",
    response_time: "Response time (p95)",
    user_satisfaction: "User satisfaction",
    learning_rate: "Learning rate",
    knowledge_coverage: "Knowledge coverage",
    technical_precision: "Technical precision",
  };
  const STATE_CLASS = {
    ok: "good", warning: "warn", breached: "bad", no_data: "idle",
    running: "info", queued: "idle", succeeded: "good", failed: "bad", cancelled: "idle",
    awaiting_approval: "warn", held: "warn", promoted: "good", rolled_back: "bad", rejected: "bad",
    completed: "good", stopped: "idle", interrupted: "warn",
    candidate: "idle", validated: "info", canary: "warn", production: "good", retired: "idle",
    registered: "idle", promotion: "good", restore: "good", rollback: "bad",
    continue: "info", promote: "good", rollback_action: "bad",
    critical: "bad", error: "bad", info: "info",
  };

  const $ = (id) => document.getElementById(id);
  let lastSnapshot = null;
  let lastAlerts = null;
  let lastUpdate = null;
  let renders = 0;
  let timer = null;
  let inFlight = false;

  // -- formatting ---------------------------------------------------------------------------------

  const num = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US"));
  const pct = (v, digits = 1) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(digits)}%`);
  const ms = (v) =>
    v === null || v === undefined ? "–" : v < 1000 ? `${Math.round(v)} ms` : `${(v / 1000).toFixed(v < 10000 ? 2 : 1)} s`;
  const fixed = (v, d = 3) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
  const two = (n) => String(n).padStart(2, "0");
  const clock = (d) => `${two(d.getHours())}:${two(d.getMinutes())}`;
  const clockS = (d) => `${clock(d)}:${two(d.getSeconds())}`;
  const date = (iso) => new Date(iso);

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    const minutes = Math.round(s / 60);
    if (minutes < 60) return `${minutes} min`;
    if (minutes < 1440) return minutes % 60 ? `${Math.floor(minutes / 60)} h ${minutes % 60} min` : `${minutes / 60} h`;
    const hours = Math.round(s / 3600);
    return hours % 24 ? `${Math.floor(hours / 24)} d ${hours % 24} h` : `${hours / 24} d`;
  }

  function ago(iso, now) {
    if (!iso) return "–";
    const seconds = ((now || Date.now()) - date(iso).getTime()) / 1000;
    if (Math.abs(seconds) < 5) return "just now";
    if (seconds < 0) return `in ${duration(-seconds)}`;
    return `${duration(seconds)} ago`;
  }

  function stamp(iso) {
    const d = date(iso);
    const today = new Date();
    const sameDay = d.toDateString() === today.toDateString();
    return sameDay ? clock(d) : `${d.toLocaleDateString("en-GB", { day: "2-digit", month: "short" })} ${clock(d)}`;
  }

  // -- DOM helpers --------------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "data") Object.assign(el.dataset, value);
      else if (key === "style") Object.assign(el.style, value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  const pill = (text, state, title) =>
    h("span", { class: `pill ${STATE_CLASS[state] || "idle"}`, title, data: { state: state || "" } }, text);

  function table(columns, rows, emptyText) {
    if (!rows.length) return h("div", { class: "empty" }, emptyText);
    return h(
      "table",
      { class: "grid-table" },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.cls }, c.label)))),
      h("tbody", {}, rows),
    );
  }

  function guarded(card, draw) {
    try {
      draw();
    } catch (error) {
      console.error(error);
      const el = $(card);
      if (el) el.append(h("div", { class: "card-error" }, `Could not draw this panel: ${error.message}`));
    }
  }

  // -- fetching -----------------------------------------------------------------------------------

  function headers() {
    const key = sessionStorage.getItem(KEY_STORAGE);
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  async function fetchJson(path) {
    const response = await fetch(path, { headers: headers(), cache: "no-store", credentials: "omit" });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    return { status: response.status, body };
  }

  function errorMessage(body, fallback) {
    return (body && body.error && body.error.message) || fallback;
  }

  async function poll() {
    if (inFlight) return;
    inFlight = true;
    try {
      const [snapshot, alerts] = await Promise.all([
        fetchJson("/v1/dashboard/snapshot"),
        fetchJson("/v1/alerts?limit=20").catch(() => ({ status: 0, body: null })),
      ]);
      if (snapshot.status === 401) {
        showAuth("auth", sessionStorage.getItem(KEY_STORAGE)
          ? `That key was refused: ${errorMessage(snapshot.body, "unknown key")}`
          : "The dashboard needs an operator or admin API key.");
        return;
      }
      if (snapshot.status === 403) {
        showAuth("denied", `Access denied: ${errorMessage(snapshot.body, "your key's role is too low")}. ` +
          "The dashboard needs an operator or admin key.");
        return;
      }
      if (snapshot.status !== 200) {
        stale(`The server answered ${snapshot.status}: ${errorMessage(snapshot.body, "no snapshot")}`);
        return;
      }
      lastSnapshot = snapshot.body;
      // No alerting on this server (404) or nothing to show: no alerts.
      lastAlerts = alerts.status === 200 && alerts.body ? alerts.body.alerts || [] : [];
      lastUpdate = new Date();
      render();
    } catch (error) {
      stale(`The server cannot be reached (${error.message}).`);
    } finally {
      inFlight = false;
    }
  }

  // Not while hidden, nor while the sign-in form waits for a key.
  const shouldPoll = () => !document.hidden && !["auth", "denied"].includes(document.body.dataset.state);

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (shouldPoll()) await poll();
      schedule();
    }, POLL_MS);
  }

  function stale(message) {
    const live = $("live");
    live.dataset.state = "stale";
    $("live-text").textContent = lastUpdate ? `stale · last update ${clockS(lastUpdate)}` : "offline";
    const banner = $("banner");
    banner.textContent = message;
    banner.hidden = false;
  }

  // -- sign-in ------------------------------------------------------------------------------------

  function showAuth(state, message) {
    document.body.dataset.state = state;
    $("auth").hidden = false;
    $("board").hidden = true;
    $("banner").hidden = true;
    $("change-key").hidden = true;
    const text = $("auth-message");
    text.textContent = message;
    text.className = `auth-message ${state === "denied" ? "bad" : ""}`;
    $("live").dataset.state = "idle";
    $("live-text").textContent = "signed out";
    $("auth-key").focus();
  }

  $("auth-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("auth-key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORAGE, key);
    $("auth-key").value = "";
    document.body.dataset.state = "loading";
    poll();
  });

  $("change-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    showAuth("auth", "Enter another operator or admin API key.");
  });

  // -- rendering ----------------------------------------------------------------------------------

  function render() {
    const s = lastSnapshot;
    document.body.dataset.state = "ready";
    $("auth").hidden = true;
    $("board").hidden = false;
    $("banner").hidden = true;
    const live = $("live");
    live.dataset.state = "live";
    $("live-text").textContent = `live · updated ${clockS(lastUpdate)}`;
    guarded("serving", () => renderServing(s));
    guarded("kpis", () => renderKpis(s.kpis));
    guarded("card-traffic", () => renderTraffic(s.traffic));
    guarded("card-latency", () => renderLatency(s.traffic, s.kpis));
    guarded("card-training", () => renderTraining(s.training, s.generated_at));
    guarded("card-ab", () => renderAb(s.rollout, s.generated_at));
    guarded("card-timeline", () => renderTimeline(s.adapters, s.generated_at));
    guarded("card-alerts", () => renderAlerts(lastAlerts, s.rollout));
    guarded("card-users", () => renderUsers(s.users));
    guarded("card-datasets", () => renderDatasets(s.datasets, s.training.recent));
    renders += 1;
    document.body.dataset.renders = String(renders);
  }

  function renderServing(s) {
    const serving = s.serving;
    const status = s.rollout;
    const rollout = status.rollout;
    const chips = [h("span", { class: "chip good", title: "the adapter version in production (registry)" },
      "production ", h("b", {}, status.production))];
    if (rollout && (rollout.state === "running" || rollout.state === "held")) {
      chips.push(h("span", { class: "chip violet", title: "the candidate under A/B test" },
        "candidate ", h("b", {}, rollout.candidate), ` · ${pct(rollout.traffic, 0)}`));
    } else if (rollout && rollout.state === "awaiting_approval") {
      chips.push(h("span", { class: "chip warn" }, `${rollout.candidate} awaits approval`));
    }
    if (serving) {
      if (serving.production !== status.production) {
        chips.push(h("span", { class: "chip warn", title: "this server could not load the production adapter" },
          `this server serves ${serving.production}`));
      }
      chips.push(h("span", { class: `chip ${serving.ready ? "" : "warn"}`, title: serving.base_model },
        `${serving.engine} · ${serving.ready ? "ready" : "loading"}`));
      chips.push(h("span", { class: "chip" }, `up ${duration(serving.uptime_s)}`));
      const viewer = s.viewer;
      $("who").textContent = serving.auth === "none" || !viewer
        ? "open: no API keys configured"
        : `signed in as ${viewer.name} (${viewer.role})`;
      $("change-key").hidden = serving.auth === "none";
    }
    const firing = (lastAlerts || []).filter((a) => a.state === "firing");
    if (firing.length) {
      chips.push(h("span", { class: "chip bad", title: firing.map((a) => a.summary).join("\n") },
        `${firing.length} alert${firing.length > 1 ? "s" : ""} firing`));
    }
    $("serving").replaceChildren(...chips);
  }

  function kpiValue(kpi, value) {
    if (value === null || value === undefined) return "–";
    if (kpi.unit === "ratio") return pct(value);
    if (kpi.unit === "s") return `${Number(value).toFixed(2)} s`;
    if (kpi.unit === "points") return `${value >= 0 ? "+" : "−"}${Math.abs(value * 100).toFixed(1)} pts`;
    return String(value);
  }

  function kpiScale(kpi) {
    if (kpi.unit === "ratio") return [0, 1];
    if (kpi.unit === "s") return [0, kpi.target * 2];
    const span = Math.max(Math.abs(kpi.target) * 3, 0.01);
    return [-span, span];
  }

  function renderKpis(report) {
    const tiles = report.data.map((kpi) => {
      const [lo, hi] = kpiScale(kpi);
      const at = (v) => Math.min(100, Math.max(0, ((v - lo) / (hi - lo)) * 100));
      const bar = h("div", { class: "kpi-bar" });
      if (kpi.value !== null && kpi.value !== undefined) {
        bar.append(h("span", { class: `kpi-fill ${STATE_CLASS[kpi.status]}`, style: { width: `${at(kpi.value)}%` } }));
      }
      bar.append(h("span", { class: "kpi-target", style: { left: `${at(kpi.target)}%` }, title: "target" }));
      const per = kpi.name === "learning_rate" ? "/week" : "";
      return h(
        "div",
        {
          class: `kpi ${STATE_CLASS[kpi.status]}`,
          data: { kpi: kpi.name, status: kpi.status },
          title: `${kpi.definition}\nWindow: ${kpi.window} · samples: ${kpi.samples}`,
        },
        h("div", { class: "kpi-name" }, KPI_LABELS[kpi.name] || kpi.name),
        h("div", { class: "kpi-head" },
          h("span", { class: "kpi-value", data: { value: kpi.value === null ? "" : String(kpi.value) } }, kpiValue(kpi, kpi.value)),
          pill(kpi.status === "no_data" ? "no data" : kpi.status, kpi.status)),
        bar,
        h("div", { class: "kpi-target-text" }, `target ${kpi.comparison} ${kpiValue(kpi, kpi.target)}${per}`,
          h("span", { class: "muted" }, ` · n=${num(kpi.samples)}`)),
      );
    });
    $("kpis").replaceChildren(...tiles);
  }

  function minuteLabel(iso) {
    return clock(date(iso));
  }

  function renderTraffic(traffic) {
    const series = traffic.series;
    const total = series.reduce((sum, p) => sum + p.requests, 0);
    const errors = series.reduce((sum, p) => sum + p.errors, 0);
    $("traffic-sub").textContent = `last ${traffic.minutes} min · ${num(total)} requests`;
    barChart($("chart-requests"), {
      label: "requests per minute",
      height: 128,
      bars: series.map((p) => ({
        x: p.minute,
        stacks: [
          { name: "answered", cls: "s-req", value: p.requests - p.errors },
          { name: "errors", cls: "s-err", value: p.errors },
        ],
      })),
      xFormat: minuteLabel,
      yFormat: (v) => String(Math.round(v)),
      legend: [
        { name: "answered", cls: "s-req", value: num(total - errors) },
        { name: "errors", cls: "s-err", value: num(errors) },
      ],
    });
    const now = traffic.now;
    const stat = (label, value, key, bad) =>
      h("div", { class: `stat ${bad ? "bad" : ""}`, data: { stat: key } }, h("b", {}, value), h("span", {}, label));
    $("traffic-now").replaceChildren(
      stat("req/min", Number(now.requests_per_minute).toFixed(1), "rpm"),
      stat("p95 latency", ms(now.latency_p95_ms), "p95"),
      stat("errors", pct(now.error_rate), "errors", now.error_rate > 0.05),
      stat("tokens/s", Number(now.tokens_per_second).toFixed(1), "tps"),
      stat("stored", num(now.interactions_total), "total"),
    );
    $("traffic-now").title = `Rates over the last ${now.minutes} minutes; interactions stored in all.`;
  }

  function renderLatency(traffic, kpis) {
    const series = traffic.series;
    const target = (kpis.data.find((k) => k.name === "response_time") || {}).target;
    const points = (key) => series.map((p) => ({ x: date(p.minute).getTime(), y: p[key] }));
    const last = (key) => {
      const found = series.filter((p) => p[key] !== null).pop();
      return found ? ms(found[key]) : null;
    };
    lineChart($("chart-latency"), {
      label: "latency per minute",
      height: 160,
      series: [
        { name: "p50", cls: "s-p50", points: points("latency_p50_ms"), last: last("latency_p50_ms") },
        { name: "p95", cls: "s-p95", points: points("latency_p95_ms"), last: last("latency_p95_ms") },
      ],
      xMin: date(series[0].minute).getTime(),
      xMax: date(series[series.length - 1].minute).getTime(),
      xFormat: (v) => clock(new Date(v)),
      yFormat: (v) => (v >= 1000 ? `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)} s` : `${Math.round(v)} ms`),
      target: target ? { value: target * 1000, label: `target ${target} s` } : null,
      emptyText: "No completed answers in the last hour",
    });
  }

  function renderTraining(training, generatedAt) {
    const run = training.current;
    const box = $("training-status");
    const cycle = training.cycle;
    $("training-sub").textContent = cycle
      ? `cycle ${cycle.state}${cycle.step ? ` · ${cycle.step}` : ""}${cycle.outcome ? ` · ${cycle.outcome}` : ""}`
      : "no learning cycle yet";
    if (!run) {
      box.replaceChildren(h("div", { class: "empty" }, "No training run yet."));
      $("chart-loss").replaceChildren();
      return;
    }
    const percent = run.progress === null ? 0 : Math.round(run.progress * 100);
    const steps = run.total_steps ? `step ${num(run.step)} / ${num(run.total_steps)}` : "waiting for the first step";
    const details = [];
    if (run.epoch !== null) details.push(`epoch ${fixed(run.epoch, 2)}`);
    if (run.loss !== null) details.push(`loss ${fixed(run.loss)}`);
    if (run.eval_loss !== null) details.push(`eval ${fixed(run.eval_loss)}`);
    if (run.tokens_per_s) details.push(`${num(Math.round(run.tokens_per_s))} tok/s`);
    if (run.state === "running" && run.eta_s !== null) details.push(`ETA ${duration(run.eta_s)}`);
    if (run.finished_at) details.push(`ended ${ago(run.finished_at, date(generatedAt))}`);
    if (run.adapter_version) details.push(`adapter ${run.adapter_version}`);
    box.replaceChildren(...[
      h("div", { class: "run-head" },
        h("span", { class: "mono", title: run.id }, run.id),
        pill(run.state, run.state),
        run.phase ? h("span", { class: "muted" }, run.phase) : null,
        run.dataset_version ? h("span", { class: "muted mono small", title: "dataset" }, run.dataset_version) : null),
      h("div", {
        class: `progress ${STATE_CLASS[run.state]}`,
        role: "progressbar",
        "aria-valuemin": "0",
        "aria-valuemax": "100",
        "aria-valuenow": String(percent),
        "aria-label": "training progress",
        id: "training-progress",
      }, h("span", { class: "progress-fill", style: { width: `${percent}%` } }),
        h("span", { class: "progress-text" }, `${percent}% · ${steps}`)),
      h("div", { class: "run-details" }, details.join(" · ")),
      run.error ? h("div", { class: "run-error" }, run.error) : null,
    ].filter(Boolean));
    const points = training.loss;
    const lastOf = (key) => {
      const found = points.filter((p) => p[key] !== null).pop();
      return found ? fixed(found[key]) : null;
    };
    lineChart($("chart-loss"), {
      label: "loss curve",
      height: 116,
      series: [
        { name: "train loss", cls: "s-loss", points: points.map((p) => ({ x: p.x, y: p.loss })), area: true, last: lastOf("loss") },
        { name: "eval loss", cls: "s-eval", dashed: true, join: true, markers: true, points: points.map((p) => ({ x: p.x, y: p.eval_loss })), last: lastOf("eval_loss") },
      ],
      xMin: 0,
      xFormat: (v) => `${Math.round(v)}`,
      tooltipX: (v) => `step ${Math.round(v)}`,
      yFormat: (v) => (v >= 10 ? v.toFixed(0) : v.toFixed(1)),
      emptyText: "No loss logged yet",
    });
  }

  function renderAb(status, generatedAt) {
    const box = $("ab");
    const rollout = status.rollout;
    $("ab-sub").textContent = `production ${status.production}${status.backup ? ` · backup ${status.backup}` : ""}`;
    if (!rollout) {
      box.replaceChildren(h("div", { class: "empty" }, "No rollout yet: every user gets production."));
      return;
    }
    const now = date(generatedAt);
    const serving = rollout.state === "running" || rollout.state === "held";
    const stageText = serving
      ? `stage ${rollout.stage + 1} of ${rollout.stages.length} · ${pct(rollout.traffic, 0)} of users`
      : rollout.outcome || rollout.state;
    const head = h("div", { class: "ab-head", title: `rollout ${rollout.id}, started by ${rollout.created_by}: ${rollout.reason}` },
      pill(rollout.state.replace("_", " "), rollout.state),
      h("span", {}, h("b", {}, rollout.candidate), " vs ", h("b", {}, rollout.baseline)),
      h("span", { class: "muted" }, stageText));
    const split = h("div", { class: "split", title: "share of users per arm" },
      h("span", { class: "split-prod", style: { width: `${(1 - rollout.traffic) * 100}%` } },
        rollout.traffic < 0.9 ? `${rollout.baseline} · ${pct(1 - rollout.traffic, 0)}` : ""),
      h("span", { class: "split-cand", style: { width: `${rollout.traffic * 100}%` } },
        rollout.traffic >= 0.1 ? `${rollout.candidate} · ${pct(rollout.traffic, 0)}` : ""));
    const children = [head, split];
    const ev = status.evaluation;
    if (ev) {
      const p = ev.production;
      const c = ev.candidate;
      const rows = [
        ["requests", (a) => num(a.requests), null],
        ["judged answers", (a) => num(a.judged), null],
        ["satisfaction", (a) => pct(a.satisfaction), "satisfaction", 1],
        ["correction rate", (a) => pct(a.correction_rate), "correction_rate", -1],
        ["error rate", (a) => pct(a.error_rate), "error_rate", -1],
        ["latency p50", (a) => ms(a.latency_p50_ms), "latency_p50_ms", -1],
        ["latency p95", (a) => ms(a.latency_p95_ms), "latency_p95_ms", -1],
      ].map(([label, format, key, better]) => {
        let winner = null;
        if (key && p[key] !== null && c[key] !== null && p[key] !== c[key]) {
          winner = (c[key] - p[key]) * better > 0 ? "candidate" : "production";
        }
        return h("tr", {},
          h("th", { scope: "row" }, label),
          h("td", { class: winner === "production" ? "better" : "", data: { arm: "production" } }, format(p)),
          h("td", { class: winner === "candidate" ? "better" : "", data: { arm: "candidate" } }, format(c)));
      });
      children.push(h("table", { class: "arms" },
        h("thead", {}, h("tr", {},
          h("th", {}, ""),
          h("th", { data: { arm: "production" } }, h("span", { class: "arm-dot prod" }), "production ", h("b", {}, p.model_version)),
          h("th", { data: { arm: "candidate" } }, h("span", { class: "arm-dot cand" }), "candidate ", h("b", {}, c.model_version)))),
        h("tbody", {}, rows)));
      const action = ev.action === "rollback" ? "rollback_action" : ev.action;
      children.push(h("div", { class: "decision" },
        pill(ev.action, action), " ", h("span", {}, ev.reasons[0] || ev.finding),
        h("span", { class: "muted small" }, ` · ${ev.final ? "final" : "interim"} look ${ago(ev.evaluated_at, now)}`)));
    } else {
      children.push(h("div", { class: "empty" }, "No arm measured yet."));
    }
    if (serving && status.stage_ends_at) {
      children.push(h("div", { class: "muted small" },
        `stage ends ${ago(status.stage_ends_at, now)} · test ends ${status.test_ends_at ? ago(status.test_ends_at, now) : "–"}`));
    }
    box.replaceChildren(...children);
  }

  const LANE_COLORS = {
    candidate: "st-candidate", validated: "st-validated", canary: "st-canary", production: "st-production",
    retired: "st-retired", rolled_back: "st-rolled_back", rejected: "st-rejected",
  };

  function marker(kind, x, y) {
    if (kind === "promotion") return svg("path", { d: `M${x},${y - 7}L${x + 6},${y + 4}L${x - 6},${y + 4}Z`, class: "mk good" });
    if (kind === "rollback") return svg("path", { d: `M${x},${y + 7}L${x + 6},${y - 4}L${x - 6},${y - 4}Z`, class: "mk bad" });
    if (kind === "restore") return svg("path", { d: `M${x},${y - 6}L${x + 6},${y}L${x},${y + 6}L${x - 6},${y}Z`, class: "mk good" });
    return svg("circle", { cx: x, cy: y, r: 2.6, class: "mk small" });
  }

  function renderTimeline(adapters, generatedAt) {
    const container = $("timeline-chart");
    const versions = adapters.versions;
    const events = adapters.events;
    const promotions = events.filter((e) => e.kind === "promotion").length;
    const rollbacks = events.filter((e) => e.kind === "rollback").length;
    const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
    $("timeline-sub").textContent =
      `${plural(versions.length, "version")} · ${plural(promotions, "promotion")} · ${plural(rollbacks, "rollback")}`;
    if (!versions.length) {
      container.replaceChildren(h("div", { class: "chart-empty" }, "No adapter trained yet: the base model serves."));
      $("timeline-events").replaceChildren();
      return;
    }
    container.replaceChildren();
    const width = Math.max(260, Math.floor(container.clientWidth || 400));
    const lane = 20;
    const left = 62;
    const right = 14;
    const top = 6;
    const height = top + versions.length * lane + 22;
    const t0 = Math.min(...events.map((e) => date(e.at).getTime()), ...versions.map((v) => date(v.created_at).getTime()));
    const t1 = Math.max(date(generatedAt).getTime(), t0 + 1000);
    const x = (t) => left + ((t - t0) / (t1 - t0)) * (width - left - right);
    const root = svg("svg", { class: "chart-svg timeline", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "model version timeline" });
    versions.forEach((version, index) => {
      const cy = top + index * lane + lane / 2;
      const label = svg("text", { class: `lane-label ${version.state === "production" ? "current" : ""}`, x: left - 8, y: cy + 4, "text-anchor": "end" });
      label.textContent = version.version;
      root.append(label, svg("line", { class: "lane", x1: left, x2: width - right, y1: cy, y2: cy }));
      const own = events.filter((e) => e.version === version.version);
      own.forEach((event, i) => {
        const start = date(event.at).getTime();
        const end = i + 1 < own.length ? date(own[i + 1].at).getTime() : t1;
        const x0 = x(start);
        const w = Math.max(2, x(end) - x0);
        const seg = svg("rect", {
          class: `seg ${LANE_COLORS[event.to_state] || "st-candidate"}`, x: x0, y: cy - 5, width: w, height: 10, rx: 3,
          "data-state": event.to_state,
        });
        seg.append(svg("title", {}, [`${version.version}: ${event.to_state.replace("_", " ")} from ${stamp(event.at)}`]));
        root.append(seg);
      });
      for (const event of own) {
        const g = svg("g", { class: "tl-event", "data-kind": event.kind, "data-version": event.version });
        g.append(marker(event.kind, x(date(event.at).getTime()), cy));
        g.append(svg("title", {}, [`${stamp(event.at)} · ${version.version} ${event.kind} (${event.from_state || "new"} → ${event.to_state}) by ${event.actor}: ${event.reason}`]));
        root.append(g);
      }
      if (version.is_backup) {
        const tag = svg("text", { class: "lane-tag", x: width - right, y: cy - 7, "text-anchor": "end" });
        tag.textContent = "backup";
        root.append(tag);
      }
    });
    const axisY = top + versions.length * lane + 14;
    [[t0, "start"], [(t0 + t1) / 2, "middle"], [t1, "end"]].forEach(([t, anchor]) => {
      const text = svg("text", { class: "tick", x: x(t), y: axisY, "text-anchor": anchor });
      text.textContent = stamp(new Date(t).toISOString());
      root.append(text);
    });
    container.append(root);
    const legendItems = [["production", "st-production"], ["canary", "st-canary"], ["validated", "st-validated"],
      ["retired", "st-retired"], ["rolled back", "st-rolled_back"]];
    container.append(h("div", { class: "legend" }, legendItems.map(([name, cls]) =>
      h("span", { class: "legend-item" }, h("i", { class: `swatch block ${cls}` }), name)),
    h("span", { class: "legend-item" }, h("span", { class: "glyph good" }, "▲"), "promotion"),
    h("span", { class: "legend-item" }, h("span", { class: "glyph bad" }, "▼"), "rollback")));
    const notable = events.filter((e) => !["registered"].includes(e.kind)).slice(-5).reverse();
    $("timeline-events").replaceChildren(...notable.map((e) => h("li", { data: { kind: e.kind, version: e.version } },
      h("span", { class: "ev-time", title: e.at }, stamp(e.at)),
      pill(e.kind, e.kind),
      h("b", {}, e.version),
      h("span", { class: "ev-reason", title: `${e.reason} (${e.actor})` }, `${e.reason} · ${e.actor}`))));
  }

  function renderAlerts(alerts, status) {
    const firing = alerts.filter((a) => a.state === "firing");
    const resolved = alerts.filter((a) => a.state !== "firing").slice(0, 3);
    $("alerts-sub").textContent = firing.length ? `${firing.length} firing` : "all clear";
    const item = (a) => h("li", { class: `alert ${a.state}`, data: { rule: a.rule || "", severity: a.severity || "" } },
      h("div", { class: "alert-head" }, pill(a.severity || "alert", a.state === "firing" ? a.severity : "idle"), h("b", {}, a.rule || a.kind || "alert")),
      h("div", {}, a.summary || ""),
      h("div", { class: "muted small" },
        a.value !== undefined && a.value !== null ? `value ${fixed(a.value, 3)}` : "",
        a.threshold !== undefined && a.threshold !== null ? ` vs ${fixed(a.threshold, 3)}` : "",
        a.state === "firing" ? ` · since ${ago(a.started_at)}` : ` · resolved ${ago(a.resolved_at)}`,
        a.actions && a.actions.length ? ` · ${a.actions.map((x) => (typeof x === "string" ? x : `${x.action} ${x.status || ""}`.trim())).join(", ")}` : ""));
    const children = [];
    if (!firing.length) children.push(h("div", { class: "all-clear" }, h("span", { class: "check" }, "✓"), "No active alerts"));
    else children.push(h("ul", { class: "alerts" }, firing.map(item)));
    if (resolved.length) {
      children.push(h("h3", { class: "subhead" }, "Recently resolved"), h("ul", { class: "alerts resolved" }, resolved.map(item)));
    }
    // The rollout's audit trail: who moved it, when and why.
    const events = (status.events || []).slice(-4).reverse();
    if (events.length) {
      children.push(h("h3", { class: "subhead" }, "Rollout log"), h("ol", { class: "events log" }, events.map((e) =>
        h("li", { title: e.reason },
          h("span", { class: "ev-time" }, stamp(e.at)),
          pill(e.action, e.to_state),
          h("span", { class: "ev-reason" }, `${e.actor}: ${e.reason}`)))));
      if (status.rollout && status.rollout.outcome) {
        children.push(h("div", { class: "muted small" }, `outcome: ${status.rollout.outcome}`));
      }
    }
    $("alerts").replaceChildren(...children);
  }

  function renderUsers(users) {
    $("users-sub").textContent = `last ${users.window} · ${num(users.active)} users · ${num(users.interactions)} interactions`;
    const top = Math.max(1, ...users.data.map((u) => u.interactions));
    const rows = users.data.map((u) => h("tr", { data: { user: u.user } },
      h("td", { class: "user" }, u.user),
      h("td", { class: "num" }, h("div", { class: "share" },
        h("span", { class: "share-bar", style: { width: `${(u.interactions / top) * 100}%` } }),
        h("span", { class: "share-text" }, num(u.interactions)))),
      h("td", { class: "num" }, num(u.conversations)),
      h("td", { class: "num" }, h("span", { class: "good-text" }, num(u.positive)), " / ", h("span", { class: "bad-text" }, num(u.negative))),
      h("td", { class: "num" }, num(u.corrected)),
      h("td", { class: `num ${u.errors ? "bad-text" : ""}` }, num(u.errors)),
      h("td", { class: "when", title: u.last_seen }, ago(u.last_seen))));
    $("users").replaceChildren(table([
      { label: "User" }, { label: "Interactions", cls: "num" }, { label: "Conversations", cls: "num" },
      { label: "Judged + / −", cls: "num" }, { label: "Corrections", cls: "num" }, { label: "Errors", cls: "num" },
      { label: "Last seen" },
    ], rows, "Nobody used Genesys in this window."));
  }

  function renderDatasets(datasets, runs) {
    $("datasets-sub").textContent = datasets.length ? `latest ${datasets.length}` : "";
    const rows = datasets.map((d) => h("tr", { data: { version: d.version } },
      h("td", { class: "mono", title: d.version }, d.version),
      h("td", { class: "when", title: d.created_at }, ago(d.created_at)),
      h("td", {}, d.kind === "docs" && d.topic ? `docs: ${d.topic}` : d.kind),
      h("td", { class: "num" }, num(d.rows.train || 0)),
      h("td", { class: "num" }, num(d.rows.validation || 0)),
      h("td", { class: "num" }, num(d.rows.test || 0)),
      h("td", { class: "num" }, `${num(d.preference)} / ${num(d.kto)}`),
      h("td", {}, d.adapters.join(", ") || "–")));
    $("datasets").replaceChildren(table([
      { label: "Version" }, { label: "Created" }, { label: "Kind" }, { label: "Train", cls: "num" },
      { label: "Val", cls: "num" }, { label: "Test", cls: "num" }, { label: "DPO / KTO", cls: "num" }, { label: "Adapters" },
    ], rows, "No dataset curated yet."));
    const runRows = runs.map((r) => h("tr", { data: { run: r.id } },
      h("td", { class: "mono", title: r.id }, r.id),
      h("td", {}, pill(r.state, r.state)),
      h("td", { class: "num" }, r.total_steps ? `${num(r.step)} / ${num(r.total_steps)}` : "–"),
      h("td", { class: "num" }, fixed(r.loss)),
      h("td", { class: "when" }, r.finished_at ? ago(r.finished_at) : r.started_at ? `started ${ago(r.started_at)}` : "queued"),
      h("td", {}, r.adapter_version || "–")));
    $("runs").replaceChildren(table([
      { label: "Run" }, { label: "State" }, { label: "Steps", cls: "num" },
      { label: "Loss", cls: "num" }, { label: "When" }, { label: "Adapter" },
    ], runRows, "No training run yet."));
  }

  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => lastSnapshot && render(), 150);
  });
  document.addEventListener("visibilitychange", () => {
    if (shouldPoll()) poll();
  });

  document.body.dataset.state = "loading";
  poll().then(schedule);
})();
