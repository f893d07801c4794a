/* CheeseCoin explorer: a plain script, no build step, nothing from the internet.
 *
 * Everything shown comes from the member's JSON API (docs/protocol.md section 7).
 * Memos, notes and every other string from the API are attacker-controlled,
 * so the DOM is built only with createElement / textContent / setAttribute:
 * this file never parses HTML.
 */
(function () {
  "use strict";

  var POLL_MS = 2000;         // polling, while the event stream is down
  var STREAM_POLL_MS = 15000; // while it is up: peers, hash rate and ages between events
  var ADDRESS_ROWS = 50;
  var REQUEST_TIMEOUT_MS = 5000;
  var WINDOW = 101;          // cheeses kept: 100 intervals for the charts
  var PAGE_ROWS = 20;        // table rows per "Show more"
  var REORG_OVERLAP = 6;     // cheeses fetched again below the known tip
  var MEMPOOL_ROWS = 20;
  var SVG_NS = "http://www.w3.org/2000/svg";
  var HEX40 = /^[0-9a-f]{40}$/;
  var HEX64 = /^[0-9a-f]{64}$/;

  var state = {
    status: null,
    tip: null,
    cheeses: [],           // the best stack's newest cheeses, ascending by height
    rows: PAGE_ROWS,
    params: null,          // Blue Cheese params (target_spacing, ...)
    mempoolKey: null,
    lastOk: null,
    live: false,           // the event stream (/api/events) is open
  };

  // ---------------------------------------------------------------- helpers

  function $(id) { return document.getElementById(id); }

  // el("a", {href: "#/x", class: "c"}, "text", childNode, ...): strings become text nodes.
  function el(tag, attrs) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }

  function setAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      if (attrs[k] !== null && attrs[k] !== undefined && attrs[k] !== false) node.setAttribute(k, String(attrs[k]));
    });
  }

  function append(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function setText(id, text) {
    var node = $(id);
    text = String(text);
    if (node && node.textContent !== text) node.textContent = text;
  }

  function abbrev(s, head, tail) {
    s = String(s);
    head = head || 8; tail = tail || 4;
    return s.length > head + tail + 1 ? s.slice(0, head) + "…" + s.slice(-tail) : s;
  }

  // Links are built only from values that pass these checks, so an href is always "#/...".
  function cheeseHref(key) { return "#/cheese/" + encodeURIComponent(String(key)); }
  function txHref(txid) { return "#/tx/" + encodeURIComponent(String(txid)); }

  function smellLink(smell) {
    if (typeof smell !== "string" || !HEX40.test(smell)) return el("span", {class: "mono"}, String(smell));
    return el("a", {class: "mono", href: cheeseHref(smell), title: smell}, smell);
  }

  function txLink(txid) {
    if (typeof txid !== "string" || !HEX40.test(txid)) return el("span", {class: "mono muted"}, "—");
    return el("a", {class: "mono", href: txHref(txid), title: txid}, abbrev(txid, 10, 4));
  }

  function addrHref(a) { return "#/address/" + encodeURIComponent(String(a)); }

  function addr(a, full) {
    var text = full ? String(a) : abbrev(a, 6, 4);
    if (typeof a !== "string" || !HEX64.test(a)) return el("span", {class: "mono addr", title: String(a)}, text);
    return el("a", {class: "mono addr", href: addrHref(a), title: a}, text);
  }

  function isInt(x) { return typeof x === "number" && isFinite(x) && Math.floor(x) === x; }

  // log2 of a decimal string of any size (cumulative work can pass 2^53).
  function log2Decimal(s) {
    s = String(s);
    if (!/^\d+$/.test(s) || s === "0") return null;
    s = s.replace(/^0+/, "");
    var lead = parseFloat(s.charAt(0) + "." + s.slice(1, 16));
    return ((s.length - 1) + Math.log10(lead)) / Math.log10(2);
  }

  function fmtRate(h) {
    if (typeof h !== "number" || !isFinite(h) || h < 0) return "—";
    var units = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s"];
    var i = 0;
    while (h >= 1000 && i < units.length - 1) { h /= 1000; i++; }
    return (h >= 100 || i === 0 ? Math.round(h) : h.toFixed(h >= 10 ? 1 : 2)) + " " + units[i];
  }

  // "8s", "3m 05s", "2h 10m", "4d 3h": short enough for a table cell on a phone.
  function fmtShort(sec) {
    sec = Math.max(0, Math.round(sec));
    var pad = function (x) { return (x < 10 ? "0" : "") + x; };
    if (sec < 60) return sec + "s";
    if (sec < 3600) return Math.floor(sec / 60) + "m " + pad(sec % 60) + "s";
    if (sec < 86400) return Math.floor(sec / 3600) + "h " + pad(Math.floor((sec % 3600) / 60)) + "m";
    return Math.floor(sec / 86400) + "d " + Math.floor((sec % 86400) / 3600) + "h";
  }

  function fmtAge(ts) {
    if (!isInt(ts)) return "—";
    var d = Date.now() / 1000 - ts;
    if (d < -5) return "in " + fmtShort(-d);
    if (d < 5) return "just now";
    return fmtShort(d) + " ago";
  }

  function fmtDate(ts) {
    if (!isInt(ts)) return String(ts);
    var d = new Date(ts * 1000);
    return isNaN(d.getTime()) ? String(ts) : d.toLocaleString();
  }

  function txsOf(c) {
    var u = c && c.unit_of_information;
    return u && Array.isArray(u.transactions) ? u.transactions : [];
  }

  // ---------------------------------------------------------------- API

  // Every failure of api() is an ApiError: status is the HTTP status (0 when there was no answer).
  function ApiError(path, status, message) {
    this.path = path; this.status = status; this.message = message;
  }

  function api(path) {
    var ctl = typeof AbortController === "function" ? new AbortController() : null;
    var timer = ctl ? setTimeout(function () { ctl.abort(); }, REQUEST_TIMEOUT_MS) : null;
    return fetch(path, {cache: "no-store", headers: {"Accept": "application/json"}, signal: ctl ? ctl.signal : undefined})
      .then(function (res) {
        return res.text().then(function (body) {
          var data = null;
          try { data = body ? JSON.parse(body) : null; } catch (e) { data = null; }
          if (!res.ok) throw new ApiError(path, res.status, (data && data.message) || ("HTTP " + res.status));
          if (data === null || typeof data !== "object") throw new ApiError(path, res.status, "the answer is not JSON");
          return data;
        });
      }, function (e) {
        throw new ApiError(path, 0, e && e.name === "AbortError" ? "no answer within " + REQUEST_TIMEOUT_MS / 1000 + " s" : "no answer");
      })
      .finally(function () { if (timer) clearTimeout(timer); });
  }

  // ---------------------------------------------------------------- status

  function renderStatus(s) {
    setText("network", s.network || "?");
    setText("height", isInt(s.height) ? String(s.height) : "—");
    var tip = $("tip");
    var tipText = typeof s.tip === "string" ? s.tip : "—";
    if (tip.textContent !== tipText) {
      tip.textContent = tipText;
      tip.setAttribute("href", HEX40.test(tipText) ? cheeseHref(tipText) : "#/");
    }
    setText("blue-cheese", typeof s.blue_cheese === "string" ? abbrev(s.blue_cheese, 12, 4) : "—");
    $("blue-cheese").setAttribute("title", String(s.blue_cheese || ""));

    setText("work", s.work !== undefined ? String(s.work) : "—");
    $("work").setAttribute("title", String(s.work));
    var l2 = log2Decimal(s.work);
    setText("work-log2", l2 === null ? "" : "≈ 2^" + l2.toFixed(2) + " smell tries");

    setText("bits", isInt(s.bits) ? s.bits : "—");
    setText("bits-tries", isInt(s.bits) ? "≈ 2^" + s.bits + " tries per cheese" : "");

    setText("hashrate", fmtRate(s.hashrate));
    var eta = "";
    if (s.mining && typeof s.hashrate === "number" && s.hashrate > 0 && isInt(s.bits)) {
      eta = "≈ " + fmtShort(Math.pow(2, s.bits) / s.hashrate) + " per cheese alone";
    } else if (!s.mining) {
      eta = "not mining";
    }
    setText("hashrate-eta", eta);

    var peers = Array.isArray(s.peers) ? s.peers : [];
    setText("peers", peers.length);
    var inbound = peers.filter(function (p) { return p && p.inbound; }).length;
    setText("peers-sub", peers.length ? (peers.length - inbound) + " out · " + inbound + " in" : "alone");
    renderPeers(peers);

    setText("mempool", isInt(s.mempool) ? String(s.mempool) : "—");
    var mining = $("mining");
    setText("mining", s.mining ? "mining" : "idle");
    mining.className = "pill " + (s.mining ? "on" : "off");
  }

  // Section 5.3: whether the link is encrypted (TLS, the peer's key checked); nothing from
  // a member that does not say.
  function linkPill(encrypted) {
    if (encrypted === true) {
      return el("span", {class: "pill small on", title: "TLS 1.3, the peer's identity key checked"}, "encrypted");
    }
    if (encrypted === false) {
      return el("span", {class: "pill small warn", title: "plain text: anyone on the path can read it"}, "plain");
    }
    return document.createTextNode("");
  }

  function renderPeers(peers) {
    var list = $("peer-list");
    clear(list);
    if (!peers.length) { list.appendChild(el("li", {class: "empty"}, "No peers connected.")); return; }
    peers.forEach(function (p) {
      p = p || {};
      list.appendChild(el("li", null,
        el("span", {class: "mono strong"}, String(p.host) + ":" + String(p.port)),
        el("span", {class: "pill small " + (p.inbound ? "in" : "out")}, p.inbound ? "in" : "out"),
        linkPill(p.encrypted),
        el("span", {class: "right"}, "height " + (isInt(p.height) ? String(p.height) : "?")),
        el("div", {class: "mono muted small", title: String(p.node_id || "")}, "node " + abbrev(p.node_id || "?", 12, 4))
      ));
    });
  }

  function showError(e) {
    var box = $("error");
    var why = e instanceof ApiError ? e.path.split("?")[0] + ": " + e.message : String(e);
    clear(box);
    box.appendChild(el("strong", null, "Cannot reach the member API. "));
    box.appendChild(document.createTextNode("(" + why + ") Retrying every " + POLL_MS / 1000 + " s…"));
    state.live = false;
    box.hidden = false;
    document.body.classList.add("stale");
    $("live-dot").className = "dot down";
    setText("updated", state.lastOk ? "last update " + fmtAge(Math.floor(state.lastOk / 1000)) : "no data yet");
    if (!state.cheeses.length) {
      var body = $("cheeses");
      clear(body);
      body.appendChild(el("tr", {class: "placeholder"}, el("td", {colspan: 6}, "Waiting for the member…")));
      emptyChart($("chart-spacing"), "Waiting for the member…");
      emptyChart($("chart-bits"), "Waiting for the member…");
    }
  }

  function hideError() {
    $("error").hidden = true;
    document.body.classList.remove("stale");
    $("live-dot").className = "dot up";
    $("live-dot").setAttribute("data-stream", state.live ? "live" : "polling");
    $("live-dot").title = state.live ? "Live: updated by the member's event stream" : "Polling the member every " + POLL_MS / 1000 + " s";
  }

  // ---------------------------------------------------------------- cheeses

  function linked(list) {
    for (var i = 1; i < list.length; i++) {
      if (list[i].sequence_number !== list[i - 1].sequence_number + 1 || list[i].parent_smell !== list[i - 1].smell) return false;
    }
    return true;
  }

  function fetchRange(from, count) {
    return api("/api/cheeses?from=" + from + "&count=" + count).then(function (d) {
      return (Array.isArray(d.cheeses) ? d.cheeses : []).filter(function (c) { return c && isInt(c.sequence_number); })
        .sort(function (a, b) { return a.sequence_number - b.sequence_number; });
    });
  }

  // Bring state.cheeses up to the tip in status: fetch only what is new (plus a
  // few below it, for short reorganisations); start over if that does not link.
  function refreshCheeses(s) {
    var h = s.height;
    if (!isInt(h) || h < 0) return Promise.resolve();
    var have = state.cheeses;
    var full = Math.max(0, h - WINDOW + 1);
    var from = full;
    if (have.length) {
      var top = have[have.length - 1].sequence_number;
      from = Math.max(full, Math.min(top + 1, h) - REORG_OVERLAP, have[0].sequence_number);
    }
    return fetchRange(from, h - from + 1).then(function (fresh) {
      var merged = have.filter(function (c) { return c.sequence_number < from; }).concat(fresh);
      if (from !== full && !linked(merged)) {
        return fetchRange(full, h - full + 1);
      }
      return merged;
    }).then(function (list) {
      state.cheeses = list.slice(-WINDOW);
      state.tip = s.tip;
      renderCheeses();
      renderCharts();
    });
  }

  function renderCheeses() {
    var body = $("cheeses");
    var list = state.cheeses;
    clear(body);
    if (!list.length) {
      body.appendChild(el("tr", {class: "placeholder"}, el("td", {colspan: 6}, "No cheeses yet.")));
      $("more").hidden = true;
      return;
    }
    var shown = list.slice(-state.rows).reverse();
    shown.forEach(function (c, i) {
      var prev = shown[i + 1] || list[list.length - shown.length - 1] || null;
      if (prev && prev.sequence_number !== c.sequence_number - 1) prev = null;
      var u = c.unit_of_information || {};
      var href = HEX40.test(String(c.smell)) ? cheeseHref(c.smell) : cheeseHref(c.sequence_number);
      var tr = el("tr", {class: "row" + (c.smell === state.tip ? " tip-row" : ""), tabindex: 0, "data-href": href},
        el("td", {class: "num strong"}, String(c.sequence_number)),
        el("td", null, el("a", {class: "mono", href: href, title: String(c.smell)}, abbrev(c.smell, 10, 4))),
        el("td", {class: "age", "data-ts": c.timestamp, title: fmtDate(c.timestamp)}, fmtAge(c.timestamp)),
        el("td", {class: "num opt"}, prev && isInt(c.timestamp) && isInt(prev.timestamp) ? (c.timestamp - prev.timestamp) + "s" : "—"),
        el("td", {class: "opt"}, c.sequence_number === 0 ? el("span", {class: "muted"}, "Blue Cheese") :
          (typeof u.miner === "string" ? addr(u.miner) : el("span", {class: "muted"}, "?"))),
        el("td", {class: "num"}, String(txsOf(c).length))
      );
      body.appendChild(tr);
    });
    var more = $("more");
    more.hidden = state.rows >= list.length;
  }

  function refreshAges() {
    var cells = document.querySelectorAll("#cheeses td.age");
    for (var i = 0; i < cells.length; i++) {
      var ts = parseInt(cells[i].getAttribute("data-ts"), 10);
      var text = fmtAge(ts);
      if (cells[i].textContent !== text) cells[i].textContent = text;
    }
  }

  // ---------------------------------------------------------------- charts

  function chartSize(box) {
    var w = Math.max(240, Math.floor(box.clientWidth || 320));
    return {w: w, h: 150, l: 34, r: 8, t: 12, b: 22};
  }

  function niceMax(v) {
    if (v <= 0) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }

  function axes(root, g, yTicks) {
    yTicks.forEach(function (t) {
      root.appendChild(svg("line", {x1: g.l, x2: g.w - g.r, y1: t.y, y2: t.y, class: "grid"}));
      root.appendChild(svg("text", {x: g.l - 5, y: t.y + 4, class: "tick", "text-anchor": "end"}, t.label));
    });
    root.appendChild(svg("line", {x1: g.l, x2: g.w - g.r, y1: g.h - g.b, y2: g.h - g.b, class: "axis"}));
  }

  function xLabels(root, g, first, last) {
    root.appendChild(svg("text", {x: g.l, y: g.h - 6, class: "tick", "text-anchor": "start"}, "#" + first));
    root.appendChild(svg("text", {x: g.w - g.r, y: g.h - 6, class: "tick", "text-anchor": "end"}, "#" + last));
  }

  function renderCharts() {
    var list = state.cheeses;
    var intervals = [];
    for (var i = 1; i < list.length; i++) {
      if (isInt(list[i].timestamp) && isInt(list[i - 1].timestamp)) {
        intervals.push({n: list[i].sequence_number, v: list[i].timestamp - list[i - 1].timestamp});
      }
    }
    drawSpacing(intervals);
    drawBits(list.slice(-100));
  }

  function emptyChart(box, text) {
    clear(box);
    box.appendChild(el("div", {class: "chart-empty"}, text));
  }

  function drawSpacing(data) {
    var box = $("chart-spacing");
    var target = state.params && isInt(state.params.target_spacing) ? state.params.target_spacing : null;
    if (!data.length) { emptyChart(box, "Needs at least two cheeses."); setText("spacing-hint", ""); return; }
    var sum = data.reduce(function (a, d) { return a + d.v; }, 0);
    setText("spacing-hint", "avg " + (sum / data.length).toFixed(1) + " s" + (target ? " · target " + target + " s" : ""));
    var g = chartSize(box);
    // One slow cheese must not flatten the rest: the scale stops a little above
    // the 90th percentile (and at least 1.5 x target); taller bars are cut and marked.
    var sorted = data.map(function (d) { return d.v; }).sort(function (a, b) { return a - b; });
    var p90 = sorted[Math.floor(0.9 * (sorted.length - 1))];
    var maxV = niceMax(Math.min(sorted[sorted.length - 1], Math.max(p90 * 1.5, target ? target * 1.5 : 1)));
    var plotW = g.w - g.l - g.r, plotH = g.h - g.t - g.b;
    var y = function (v) { return g.t + plotH - (Math.max(0, v) / maxV) * plotH; };
    var root = svg("svg", {width: g.w, height: g.h, viewBox: "0 0 " + g.w + " " + g.h, role: "img",
      "aria-label": "Seconds between the last " + data.length + " cheeses"});
    axes(root, g, [0, maxV / 2, maxV].map(function (v) { return {y: y(v), label: fmtTick(v) + "s"}; }));
    var slot = plotW / data.length;
    var bw = Math.max(1, slot - (slot > 4 ? 1.5 : 0.5));
    data.forEach(function (d, i) {
      var cut = d.v > maxV;
      var top = y(Math.min(d.v, maxV));
      var x = g.l + i * slot;
      var bar = svg("rect", {x: x.toFixed(2), y: top.toFixed(2), width: bw.toFixed(2),
        height: Math.max(0.5, g.t + plotH - top).toFixed(2), class: "bar" + (target && d.v > 2 * target ? " slow" : "")},
        svg("title", null, "#" + d.n + ": " + d.v + " s after its parent"));
      root.appendChild(bar);
      if (cut) {
        var mid = x + bw / 2, half = Math.max(2.5, bw / 2 + 1);
        root.appendChild(svg("path", {d: "M" + (mid - half).toFixed(2) + "," + (g.t - 1) + " L" + (mid + half).toFixed(2) + "," + (g.t - 1) +
          " L" + mid.toFixed(2) + "," + (g.t + 5), class: "cut"}, svg("title", null, "#" + d.n + ": " + d.v + " s (off the scale)")));
      }
    });
    if (target) {
      root.appendChild(svg("line", {x1: g.l, x2: g.w - g.r, y1: y(target), y2: y(target), class: "target"}));
    }
    xLabels(root, g, data[0].n, data[data.length - 1].n);
    clear(box);
    box.appendChild(root);
  }

  function drawBits(list) {
    var box = $("chart-bits");
    var data = list.filter(function (c) { return isInt(c.bits); }).map(function (c) { return {n: c.sequence_number, v: c.bits}; });
    if (!data.length) { emptyChart(box, "No cheeses yet."); setText("bits-hint", ""); return; }
    var vals = data.map(function (d) { return d.v; });
    var lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
    setText("bits-hint", lo === hi ? "steady at " + lo : lo + "–" + hi + " bits");
    var minY = Math.max(0, lo - 1), maxY = hi + 1;
    var g = chartSize(box);
    var plotW = g.w - g.l - g.r, plotH = g.h - g.t - g.b;
    var y = function (v) { return g.t + plotH - ((v - minY) / (maxY - minY)) * plotH; };
    var x = function (i) { return g.l + (data.length === 1 ? plotW / 2 : (i / (data.length - 1)) * plotW); };
    var root = svg("svg", {width: g.w, height: g.h, viewBox: "0 0 " + g.w + " " + g.h, role: "img",
      "aria-label": "Difficulty in bits of the last " + data.length + " cheeses"});
    var ticks = [];
    var step = Math.max(1, Math.ceil((maxY - minY) / 4));
    for (var v = minY; v <= maxY; v += step) ticks.push({y: y(v), label: String(v)});
    axes(root, g, ticks);
    var pts = [];
    data.forEach(function (d, i) {
      if (i > 0) pts.push(x(i).toFixed(2) + "," + y(data[i - 1].v).toFixed(2));
      pts.push(x(i).toFixed(2) + "," + y(d.v).toFixed(2));
    });
    var area = "M" + x(0).toFixed(2) + "," + (g.t + plotH) + " L" + pts.join(" L") + " L" + x(data.length - 1).toFixed(2) + "," + (g.t + plotH) + " Z";
    root.appendChild(svg("path", {d: area, class: "area"}));
    root.appendChild(svg("polyline", {points: pts.join(" "), class: "line"}));
    data.forEach(function (d, i) {
      if (i === 0 || d.v !== data[i - 1].v || i === data.length - 1) {
        root.appendChild(svg("circle", {cx: x(i).toFixed(2), cy: y(d.v).toFixed(2), r: 3, class: "point"},
          svg("title", null, "#" + d.n + ": " + d.v + " bits")));
      }
    });
    xLabels(root, g, data[0].n, data[data.length - 1].n);
    clear(box);
    box.appendChild(root);
  }

  function fmtTick(v) { return v >= 10 || v === 0 ? String(Math.round(v)) : v.toFixed(1); }

  // ---------------------------------------------------------------- mempool

  function refreshMempool(s) {
    var key = String(s.mempool) + "/" + String(s.tip);
    if (key === state.mempoolKey) return Promise.resolve();
    if (!s.mempool) {
      state.mempoolKey = key;
      renderMempool([], 0);
      return Promise.resolve();
    }
    return api("/api/mempool").then(function (d) {
      state.mempoolKey = key;
      var txs = Array.isArray(d.transactions) ? d.transactions : [];
      renderMempool(txs, txs.length);
    });
  }

  function renderMempool(items, total) {
    var list = $("mempool-list");
    clear(list);
    if (!items.length) { list.appendChild(el("li", {class: "empty"}, "The mempool is empty.")); return; }
    items.slice(0, MEMPOOL_ROWS).forEach(function (item) {
      var tx = (item && item.tx) || {};
      list.appendChild(el("li", null,
        txLink(item && item.txid),
        el("span", {class: "right strong"}, String(tx.amount) + " coins"),
        el("div", {class: "small muted"}, addr(tx.from), " → ", addr(tx.to), " · fee " + String(tx.fee)),
        tx.memo ? el("div", {class: "small memo"}, String(tx.memo)) : null
      ));
    });
    if (total > MEMPOOL_ROWS) list.appendChild(el("li", {class: "empty"}, "… and " + (total - MEMPOOL_ROWS) + " more"));
  }

  // ---------------------------------------------------------------- detail views

  function kv(rows) {
    var dl = el("dl", {class: "kv"});
    rows.forEach(function (r) {
      if (!r) return;
      dl.appendChild(el("dt", null, r[0]));
      dl.appendChild(el("dd", r[2] ? {class: r[2]} : null, r[1]));
    });
    return dl;
  }

  function rawJson(obj) {
    return el("details", {class: "raw"}, el("summary", null, "Raw JSON"),
      el("pre", {class: "mono"}, JSON.stringify(obj, null, 2)));
  }

  function showDetail(title, nodes) {
    var panel = $("detail");
    setText("detail-title", title);
    var body = $("detail-body");
    clear(body);
    append(body, nodes);
    panel.hidden = false;
  }

  function detailMessage(title, text) {
    showDetail(title, el("p", {class: "muted"}, text));
  }

  function renderCheeseDetail(data) {
    var c = data.cheese || {};
    var u = c.unit_of_information || {};
    var txs = txsOf(c);
    var txids = Array.isArray(data.txids) ? data.txids : null;
    var n = c.sequence_number;
    var tipHeight = state.status && isInt(state.status.height) ? state.status.height : null;
    var nav = el("div", {class: "nav"},
      isInt(n) && n > 0 ? el("a", {href: cheeseHref(c.parent_smell), class: "btn"}, "← parent #" + (n - 1)) : null,
      isInt(n) && data.best && tipHeight !== null && n < tipHeight ? el("a", {href: cheeseHref(n + 1), class: "btn"}, "child #" + (n + 1) + " →") : null
    );
    var badges = el("p", {class: "badges"},
      el("span", {class: "pill " + (data.best ? "on" : "warn")}, data.best ? "on the best stack" : "not on the best stack"),
      data.best ? confirmations(n) : null
    );
    var rows = [
      ["Height (sequence number)", String(n)],
      ["Smell", String(c.smell), "mono break"],
      ["Parent smell", n === 0 ? el("span", {class: "mono muted"}, String(c.parent_smell)) : smellLink(c.parent_smell), "break"],
      ["Timestamp", [String(c.timestamp), el("span", {class: "muted"}, " · " + fmtDate(c.timestamp) + " · " + fmtAge(c.timestamp))]],
      ["Bits (difficulty)", String(c.bits)],
      ["Nonce", String(c.nonce), "mono"],
    ];
    if (n === 0) {
      rows.push(["Network", String(u.network)]);
      var p = u.params || {};
      rows.push(["Params", Object.keys(p).sort().map(function (k) { return k + " = " + String(p[k]); }).join(" · ")]);
    } else {
      rows.push(["Miner", addr(u.miner, true), "break"]);
    }
    if (u.note !== undefined) rows.push(["Note", String(u.note), "memo"]);
    rows.push(["Transactions", String(txs.length)]);

    var nodes = [nav, badges, kv(rows)];
    if (txs.length) {
      nodes.push(el("h3", null, "Transactions"));
      nodes.push(txTable(txs, txids));
      if (!txids) nodes.push(el("p", {class: "small muted"}, "This member did not send txids with the cheese; transaction links are unavailable."));
    }
    nodes.push(rawJson(c));
    showDetail("Cheese #" + String(n), nodes);
  }

  // A pill counting the cheeses from height n to the tip; kept current by refreshConfirmations.
  function confirmations(n) {
    if (!isInt(n)) return null;
    var pill = el("span", {class: "pill off", "data-confirm-height": n});
    setConfirmations(pill);
    return pill;
  }

  function setConfirmations(pill) {
    var h = state.status && isInt(state.status.height) ? state.status.height : null;
    var n = parseInt(pill.getAttribute("data-confirm-height"), 10);
    var k = h === null ? null : h - n + 1;
    var text = k === null ? "" : k < 1 ? "above the tip" : String(k) + " confirmation" + (k === 1 ? "" : "s");
    if (pill.textContent !== text) pill.textContent = text;
  }

  function refreshConfirmations() {
    var pills = document.querySelectorAll("[data-confirm-height]");
    for (var i = 0; i < pills.length; i++) setConfirmations(pills[i]);
  }

  function txTable(txs, txids) {
    var table = el("table", {class: "tx-table"},
      el("thead", null, el("tr", null,
        el("th", null, "Txid"), el("th", null, "From"), el("th", null, "To"),
        el("th", {class: "num"}, "Amount"), el("th", {class: "num"}, "Fee"), el("th", {class: "num"}, "Nonce"), el("th", null, "Memo"))));
    var body = el("tbody");
    txs.forEach(function (tx, i) {
      tx = tx || {};
      body.appendChild(el("tr", null,
        el("td", {"data-label": "Txid"}, txids ? txLink(txids[i]) : el("span", {class: "muted"}, "#" + i)),
        el("td", {"data-label": "From"}, addr(tx.from)),
        el("td", {"data-label": "To"}, addr(tx.to)),
        el("td", {class: "num strong", "data-label": "Amount"}, String(tx.amount)),
        el("td", {class: "num", "data-label": "Fee"}, String(tx.fee)),
        el("td", {class: "num", "data-label": "Nonce"}, String(tx.nonce)),
        el("td", {class: "memo", "data-label": "Memo"}, tx.memo ? String(tx.memo) : el("span", {class: "muted"}, "—"))
      ));
    });
    table.appendChild(body);
    return el("div", {class: "table-wrap"}, table);
  }

  function renderTxDetail(txid, data) {
    var tx = data.tx || {};
    var n = data.sequence_number;
    var confirmed = data.status === "confirmed";
    var badges = el("p", {class: "badges"},
      el("span", {class: "pill " + (confirmed ? "on" : "warn")}, confirmed ? "confirmed" : String(data.status || "unknown")),
      confirmed ? confirmations(n) : null
    );
    var rows = [
      ["Txid", txid, "mono break"],
      ["Status", confirmed ? "confirmed" : String(data.status)],
      isInt(n) ? ["In cheese", el("a", {href: cheeseHref(n)}, "#" + String(n))] : null,
      ["From", addr(tx.from, true), "break"],
      ["To", addr(tx.to, true), "break"],
      ["Amount", String(tx.amount), "strong"],
      ["Fee", String(tx.fee)],
      ["Nonce", String(tx.nonce)],
      ["Memo", tx.memo ? String(tx.memo) : el("span", {class: "muted"}, "—"), "memo"],
      ["Signature", String(tx.signature), "mono break small"],
    ];
    showDetail("Transaction", [badges, kv(rows), rawJson(tx)]);
  }

  function renderAddressDetail(address, data, before) {
    var txs = Array.isArray(data.transactions) ? data.transactions : [];
    var rows = [
      ["Address", address, "mono break"],
      ["Balance", String(data.balance), "strong"],
      ["Counting the mempool", String(data.pending_balance) + " (next nonce " + String(data.pending_nonce) + ")"],
    ];
    var table = el("table", {class: "tx-table"},
      el("thead", null, el("tr", null,
        el("th", null, "Cheese"), el("th", null, "Txid"), el("th", null, "Counterparty"),
        el("th", {class: "num"}, "Amount"), el("th", {class: "num"}, "Fee"), el("th", null, "Memo"))));
    var body = el("tbody");
    txs.forEach(function (t) {
      var tx = (t && t.tx) || {};
      var out = tx.from === address;
      body.appendChild(el("tr", null,
        el("td", {"data-label": "Cheese"}, isInt(t.sequence_number) ? el("a", {href: cheeseHref(t.sequence_number)}, "#" + t.sequence_number)
          : el("span", {class: "pill warn"}, "pending")),
        el("td", {"data-label": "Txid"}, txLink(t.txid)),
        el("td", {"data-label": "Counterparty"}, addr(out ? tx.to : tx.from)),
        el("td", {class: "num strong " + (out ? "out" : "in"), "data-label": "Amount"}, (out ? "−" : "+") + String(tx.amount)),
        el("td", {class: "num", "data-label": "Fee"}, out ? String(tx.fee) : ""),
        el("td", {class: "memo", "data-label": "Memo"}, tx.memo ? String(tx.memo) : el("span", {class: "muted"}, "—"))
      ));
    });
    table.appendChild(body);
    var nodes = [kv(rows)];
    if (txs.length) nodes.push(el("div", {class: "table-wrap", id: "address-txs"}, table));
    else nodes.push(el("p", {class: "muted", id: "address-txs"}, before ? "No older transactions." : "No transactions yet."));
    var last = txs.length ? txs[txs.length - 1].sequence_number : null;
    if (txs.length >= ADDRESS_ROWS && isInt(last)) {
      nodes.push(el("p", {class: "more"}, el("a", {href: addrHref(address) + "/before/" + last}, "Older transactions")));
    }
    showDetail(before ? "Address (before cheese " + before + ")" : "Address", nodes);
  }

  // Details read the tip height (confirmations, the child link): on a first load,
  // wait a little for the first status before drawing them.
  var statusArrived;
  var firstStatus = new Promise(function (resolve) { statusArrived = resolve; });

  function afterStatus(p) {
    var wait = Promise.race([firstStatus, new Promise(function (r) { setTimeout(r, REQUEST_TIMEOUT_MS); })]);
    return Promise.all([p, wait]).then(function (both) { return both[0]; });
  }

  var routeSeq = 0;   // a slow answer for an earlier route is dropped

  function route() {
    var hash = location.hash.replace(/^#\/?/, "");
    var parts = hash.split("/");
    var kind = parts[0], key = parts.slice(1).join("/");
    try { key = decodeURIComponent(key); } catch (e) { /* keep it as typed */ }
    var seq = ++routeSeq;
    var current = function () { return seq === routeSeq; };
    if (kind === "cheese" && key) {
      detailMessage("Cheese", "Loading cheese " + key + "…");
      scrollToDetail();
      afterStatus(api("/api/cheese/" + encodeURIComponent(key))).then(function (d) {
        if (current()) renderCheeseDetail(d);
      }, function (e) {
        if (current()) detailMessage("Cheese", e.status === 404 ? "No cheese " + key + " on this member." : "Could not load cheese " + key + ": " + e.message);
      });
    } else if (kind === "tx" && key) {
      detailMessage("Transaction", "Loading transaction " + key + "…");
      scrollToDetail();
      afterStatus(api("/api/tx/" + encodeURIComponent(key))).then(function (d) {
        if (current()) renderTxDetail(key, d);
      }, function (e) {
        if (current()) detailMessage("Transaction", e.status === 404 ? "No transaction " + key + " in the stack or the mempool." : "Could not load transaction " + key + ": " + e.message);
      });
    } else if (kind === "address" && key) {
      var bits = key.split("/");
      var address = bits[0], before = bits[1] === "before" && /^\d+$/.test(bits[2] || "") ? bits[2] : null;
      detailMessage("Address", "Loading address " + address + "…");
      scrollToDetail();
      var query = "?count=" + ADDRESS_ROWS + (before ? "&before=" + before : "");
      api("/api/address/" + encodeURIComponent(address) + query).then(function (d) {
        if (current()) renderAddressDetail(address, d, before);
      }, function (e) {
        if (current()) detailMessage("Address", "Could not load address " + address + ": " + e.message);
      });
    } else if (kind === "find" && key) {
      find(key, current);
    } else {
      $("detail").hidden = true;
    }
  }

  // A smell and a txid look alike (40 hex characters): try a cheese first, then a transaction.
  function find(q, current) {
    q = q.trim().toLowerCase();
    if (/^\d+$/.test(q)) { location.replace(cheeseHref(q)); return; }
    if (HEX64.test(q)) { location.replace(addrHref(q)); return; }
    if (!HEX40.test(q)) { detailMessage("Search", "Type a height (a number), a smell or a txid (40 hex characters), or an address (64)."); return; }
    detailMessage("Search", "Looking for " + q + "…");
    api("/api/cheese/" + q).then(function () {
      if (current()) location.replace(cheeseHref(q));
    }, function () {
      return api("/api/tx/" + q).then(function () {
        if (current()) location.replace(txHref(q));
      }, function () {
        if (current()) detailMessage("Search", "Nothing found for " + q + ".");
      });
    });
  }

  function scrollToDetail() {
    var panel = $("detail");
    panel.hidden = false;
    if (panel.scrollIntoView && window.scrollY > panel.offsetTop) panel.scrollIntoView({behavior: "smooth", block: "start"});
  }

  // ---------------------------------------------------------------- polling

  function loadParams() {
    if (state.params) return Promise.resolve();
    return api("/api/cheese/0").then(function (d) {
      var u = d.cheese && d.cheese.unit_of_information;
      state.params = (u && u.params) || {};
    }, function () { state.params = null; });
  }

  var pollTimer = null, polling = false, pollAgain = false;

  // Poll now (an event arrived); one poll at a time, the next one scheduled after it.
  function poll() {
    if (polling) { pollAgain = true; return; }
    polling = true;
    clearTimeout(pollTimer);
    api("/api/status").then(function (s) {
      state.status = s;
      state.lastOk = Date.now();
      hideError();
      renderStatus(s);
      refreshConfirmations();
      statusArrived();
      setText("updated", "updated " + new Date().toLocaleTimeString());
      var work = [loadParams().then(function () {
        if (s.tip !== state.tip || !state.cheeses.length) return refreshCheeses(s);
        refreshAges();
      }), refreshMempool(s)];
      return Promise.all(work);
    }).catch(showError).then(function () {
      polling = false;
      if (pollAgain) { pollAgain = false; poll(); return; }
      pollTimer = setTimeout(poll, state.live ? STREAM_POLL_MS : POLL_MS);
    });
  }

  // The member's event stream: a new tip or transaction refreshes the page at
  // once. The browser reconnects by itself (sending Last-Event-ID); while the
  // stream is down the page polls every POLL_MS.
  function listen() {
    if (!window.EventSource) return;
    var source = new EventSource("/api/events");
    source.addEventListener("open", function () {
      state.live = true;
      $("live-dot").setAttribute("data-stream", "live");
      poll();
    });
    source.addEventListener("tip", function () { poll(); if (/^#\/?address\//.test(location.hash)) route(); });
    source.addEventListener("tx", function () { poll(); });
    source.addEventListener("error", function () {
      if (!state.live) return;
      state.live = false;
      $("live-dot").setAttribute("data-stream", "polling");
      clearTimeout(pollTimer);
      if (!polling) pollTimer = setTimeout(poll, POLL_MS);
    });
  }

  // ---------------------------------------------------------------- events

  function init() {
    $("cheeses").addEventListener("click", function (ev) {
      if (ev.target.closest && ev.target.closest("a")) return;
      var row = ev.target.closest && ev.target.closest("tr[data-href]");
      if (row) location.hash = row.getAttribute("data-href");
    });
    $("cheeses").addEventListener("keydown", function (ev) {
      if (ev.key !== "Enter") return;
      var row = ev.target.closest && ev.target.closest("tr[data-href]");
      if (row) location.hash = row.getAttribute("data-href");
    });
    $("more").addEventListener("click", function () {
      state.rows = Math.min(WINDOW, state.rows + PAGE_ROWS);
      renderCheeses();
    });
    $("search").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var q = $("search-input").value.trim();
      if (q) location.hash = "#/find/" + encodeURIComponent(q);
    });
    window.addEventListener("hashchange", route);
    var resizeTimer = null;
    window.addEventListener("resize", function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(renderCharts, 150);
    });
    route();
    poll();
    listen();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
