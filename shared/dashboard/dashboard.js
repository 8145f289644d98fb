// Live dashboard: polls the JSON feed and the watchlist quotes once a second; charts drawn on plain canvas.
"use strict";
(function () {
  const KEY_STORE = "kisgw.apiKey";
  const WATCH_STORE = "kisgw.watchlist";
  const DEFAULT_WATCH = "005930,000660,035420,035720,051910,005380";
  const POLL_MS = 1000;
  const KEEP = 120; // samples per chart: two minutes at one poll a second
  const body = document.body;
  const feedUrl = body.dataset.feedUrl || "/dashboard/feed";
  const quotesUrl = body.dataset.quotesUrl || "/v1/quotes";
  const $ = (id) => document.getElementById(id);

  const series = { kis: [], budget: [], hits: [], queue: [] };
  let lastCounts = null;
  let polls = 0;
  let feedErrors = 0;
  const lastPrice = {};

  // ---- API key: never in a URL the server sees. Typed into the box, or handed over once in the fragment
  // (#key=..., which browsers never send), then kept in sessionStorage (this tab only) and sent as a header.
  const params = new URLSearchParams(location.search);
  const frag = new URLSearchParams(location.hash.replace(/^#/, ""));
  let apiKey = frag.get("key") || sessionStorage.getItem(KEY_STORE) || "";
  localStorage.removeItem(KEY_STORE); // older pages kept it here, readable by every tab and for good
  if (frag.get("key")) {
    sessionStorage.setItem(KEY_STORE, apiKey);
    frag.delete("key");
    const rest = frag.toString();
    // Out of the address bar, history and screenshots at once.
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }
  $("api-key").value = apiKey;
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    apiKey = $("api-key").value.trim();
    sessionStorage.setItem(KEY_STORE, apiKey);
    showMessage("");
  });

  let watch = params.get("symbols") || localStorage.getItem(WATCH_STORE) || DEFAULT_WATCH;
  $("watch-symbols").value = watch;
  $("watch-form").addEventListener("submit", (e) => {
    e.preventDefault();
    watch = $("watch-symbols").value.replace(/\s+/g, "").toUpperCase();
    localStorage.setItem(WATCH_STORE, watch);
    $("watchlist").querySelector("tbody").innerHTML = "";
  });

  function showMessage(text) {
    const m = $("message");
    m.hidden = !text;
    m.textContent = text;
  }

  async function getJSON(url) {
    const resp = await fetch(url, { headers: { "X-API-Key": apiKey }, cache: "no-store" });
    let data = null;
    try { data = await resp.json(); } catch (_) { /* a non-JSON error page */ }
    if (!resp.ok) {
      const why = data && data.error ? data.error.message : resp.statusText;
      const err = new Error(resp.status + ": " + why);
      err.status = resp.status;
      throw err;
    }
    return data;
  }

  function push(arr, v) {
    arr.push(v);
    if (arr.length > KEEP) arr.shift();
  }

  function fmt(n, digits) {
    if (n === null || n === undefined || Number.isNaN(n)) return "–";
    return Number(n).toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 0 : digits });
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined) return "–";
    if (s < 0) return "expired";
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return h ? `${h} h ${m} min` : `${m} min ${Math.floor(s % 60)} s`;
  }

  function badge(el, text, kind) {
    el.textContent = text;
    el.className = "badge badge-" + kind;
  }

  // ---- charts --------------------------------------------------------------------------------------
  function draw(canvas, lines, opts) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, pad = 24;
    ctx.clearRect(0, 0, w, h);
    let max = opts.max || 0;
    for (const l of lines) for (const v of l.values) if (v !== null && v > max) max = v;
    max = opts.fixed ? opts.max : max > 0 ? max * 1.1 : 1;
    const digits = max < 5 ? 1 : 0;
    ctx.strokeStyle = "#2a3440";
    ctx.fillStyle = "#8b98a5";
    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = pad / 2 + (h - pad) * (i / 4);
      ctx.beginPath(); ctx.moveTo(pad + 8, y); ctx.lineTo(w, y); ctx.stroke();
      ctx.fillText(fmt(max * (1 - i / 4), digits), 2, y + 4);
    }
    let points = 0;
    for (const l of lines) {
      const n = l.values.length;
      if (!n) continue;
      ctx.strokeStyle = l.color;
      ctx.lineWidth = l.width || 2;
      ctx.setLineDash(l.dash || []);
      ctx.beginPath();
      l.values.forEach((v, i) => {
        const x = pad + 8 + (w - pad - 8) * (KEEP - n + i) / (KEEP - 1);
        const y = pad / 2 + (h - pad) * (1 - (v || 0) / max);
        if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.stroke();
      ctx.setLineDash([]);
      points = Math.max(points, n);
    }
    canvas.dataset.points = String(points);
  }

  // ---- feed ----------------------------------------------------------------------------------------
  function renderFeed(f) {
    const kis = f.kis;
    push(series.kis, kis.last_second);
    push(series.budget, kis.effective_budget);
    $("kis-rate").textContent = fmt(kis.last_second);
    $("kis-budget").textContent = fmt(kis.budget);
    $("kis-effective").textContent = fmt(kis.effective_budget, 1);
    $("kis-limit").textContent = fmt(kis.limit);
    $("kis-use").textContent = kis.budget ? fmt(100 * kis.last_second / kis.budget) + " %" : "–";
    draw($("chart-kis"), [
      { values: series.budget, color: "#d29922", dash: [6, 4], width: 1.5 },
      { values: series.kis, color: "#4aa3ff" },
    ], { max: kis.limit });

    // Hit ratio over the last poll interval when there was traffic; the lifetime ratio otherwise.
    const c = f.cache;
    let windowRatio = null;
    if (lastCounts && c.total > lastCounts.total) {
      windowRatio = (c.fresh - lastCounts.fresh) / (c.total - lastCounts.total);
    }
    lastCounts = { fresh: c.fresh, total: c.total };
    const ratio = windowRatio !== null ? windowRatio : c.hit_ratio;
    push(series.hits, ratio === null ? null : ratio * 100);
    $("hit-ratio").textContent = ratio === null ? "–" : fmt(ratio * 100, 1) + " %";
    $("hit-window").textContent = c.hit_ratio === null ? "–" : fmt(c.hit_ratio * 100, 1) + " % all time";
    draw($("chart-hits"), [{ values: series.hits, color: "#3fb950" }], { max: 100, fixed: true });

    const q = f.queue_depth || {};
    const qTotal = Object.values(q).reduce((a, b) => a + b, 0);
    push(series.queue, qTotal);
    $("queue-total").textContent = fmt(qTotal);
    $("queue-kinds").textContent = Object.entries(q).map(([k, v]) => `${k} ${v}`).join(" · ");
    draw($("chart-queue"), [{ values: series.queue, color: "#a371f7" }], { max: 1 });

    const br = f.breaker || {};
    badge($("breaker-state"), br.state || "unknown",
      br.state === "closed" ? "ok" : br.state === "open" ? "bad" : "warn");
    $("breaker-detail").textContent = br.state && br.state !== "closed"
      ? `failures ${br.failure_count}` + (br.retry_after_s !== undefined ? ` · probe in ${fmt(br.retry_after_s, 1)} s` : "")
      : "";
    const tok = f.token || {};
    badge($("token-state"), tok.state || "unknown", tok.state === "valid" ? "ok" : tok.state === "none yet" ? "warn" : "bad");
    $("token-expiry").textContent = fmtSeconds(tok.expires_in_s);

    const lat = f.latency || {};
    $("latency").textContent = lat.count
      ? [lat.p50_s, lat.p95_s, lat.p99_s].map((s) => (s === null ? "–" : fmt(s * 1000, 1) + " ms")).join(" / ")
      : "no requests yet";
    $("batch-fill").textContent = f.batch_fill && f.batch_fill.mean !== null ? fmt(f.batch_fill.mean, 1) : "–";
    const lw = f.limiter_waits || {};
    $("limiter-waits").textContent = `${fmt(lw.waited)} waited (max ${fmt((lw.wait_max_s || 0) * 1000)} ms) / ${fmt(lw.timeouts)}`;
    const outcomes = Object.entries(kis.by_outcome || {});
    $("kis-outcomes").textContent = outcomes.length ? outcomes.map(([k, v]) => `${k} ${fmt(v)}`).join(" · ") : "none yet";

    const alerts = $("alerts");
    alerts.innerHTML = "";
    const recent = (f.alerts || []).slice(-8).reverse();
    if (!recent.length) alerts.innerHTML = '<li class="muted">none</li>';
    for (const a of recent) {
      const li = document.createElement("li");
      const when = new Date(a.time * 1000).toLocaleTimeString();
      li.textContent = `${when} ${a.event} ` + Object.entries(a.detail || {}).map(([k, v]) => `${k}=${v}`).join(", ");
      alerts.appendChild(li);
    }
  }

  // ---- watchlist -----------------------------------------------------------------------------------
  function renderQuotes(data) {
    const tbody = $("watchlist").querySelector("tbody");
    for (const [code, q] of Object.entries(data.quotes || {})) {
      let row = tbody.querySelector(`tr[data-symbol="${code}"]`);
      if (!row) {
        row = document.createElement("tr");
        row.dataset.symbol = code;
        row.innerHTML = "<td></td><td></td><td class='num price'></td><td class='num'></td>" +
          "<td class='num'></td><td class='status'></td><td class='num'></td>";
        tbody.appendChild(row);
      }
      const cells = row.children;
      const change = Number(q.change || 0);
      cells[0].textContent = code;
      cells[1].textContent = q.name || "";
      cells[2].textContent = q.price !== undefined ? fmt(q.price) : "–";
      cells[3].textContent = q.change !== undefined ? (change > 0 ? "+" : "") + fmt(change) : "";
      cells[4].textContent = q.change_rate !== undefined ? fmt(Number(q.change_rate), 2) : "";
      cells[5].textContent = q.status + (q.reason ? ` (${q.reason})` : "");
      cells[5].className = "status status-" + q.status;
      cells[6].textContent = q.age_s !== undefined ? fmt(q.age_s, 1) + " s" : "";
      row.className = change > 0 ? "up" : change < 0 ? "down" : "";
      row.dataset.status = q.status;
      if (q.price !== undefined) {
        row.dataset.price = String(q.price);
        if (lastPrice[code] !== undefined && lastPrice[code] !== q.price) {
          cells[2].classList.remove("flash");
          void cells[2].offsetWidth; // restart the animation
          cells[2].classList.add("flash");
        }
        lastPrice[code] = q.price;
      }
      row.dataset.updates = String(Number(row.dataset.updates || 0) + 1);
    }
  }

  // ---- loop ----------------------------------------------------------------------------------------
  async function poll() {
    const started = Date.now();
    try {
      if (!apiKey) throw Object.assign(new Error("enter an API key"), { status: 401 });
      const [feed, quotes] = await Promise.all([
        getJSON(feedUrl),
        watch ? getJSON(`${quotesUrl}?symbols=${encodeURIComponent(watch)}&deadline_ms=900`) : null,
      ]);
      renderFeed(feed);
      if (quotes) renderQuotes(quotes);
      polls += 1;
      body.dataset.polls = String(polls);
      $("polls").textContent = String(polls);
      $("updated").textContent = new Date().toLocaleTimeString();
      $("conn").textContent = "live";
      $("conn").className = "pill pill-ok";
      showMessage("");
    } catch (err) {
      feedErrors += 1;
      body.dataset.feedErrors = String(feedErrors);
      $("conn").textContent = err.status === 401 || err.status === 403 ? "no access" : "error";
      $("conn").className = "pill pill-bad";
      showMessage(String(err.message || err));
    }
    setTimeout(poll, Math.max(0, POLL_MS - (Date.now() - started)));
  }
  poll();
})();
