// Live dashboard of one Paxos node (templates/consensus/dashboard.html). Plain JS, no build step.
//
// Data flow: a websocket to /ws/dashboard/ receives a snapshot on connect and whenever the node
// broadcasts one. If the socket drops, the page polls state.json every `poll_ms` and keeps
// trying to reconnect with backoff; once the socket is back, polling stops. Every value from
// the node is written with textContent (commands are user data: never innerHTML).
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("dashboard-config").textContent);
  const COLORS = ["#2f7ed8", "#e4572e", "#17a398", "#f2a541", "#8e6c8a", "#6c8a2e"];
  const state = {
    socket: null,
    mode: "connecting",
    pollTimer: null,
    reconnectTimer: null,
    reconnectDelay: 1000,
    snapshot: null,
    renders: 0,
    polls: 0,
  };

  // ---------------------------------------------------------------- small DOM helpers

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function replaceRows(tbody, rows) {
    tbody.replaceChildren(...rows);
  }

  function groupColor(groupId, index) {
    return COLORS[(index === undefined ? groupId - 1 : index) % COLORS.length];
  }

  function formatDuration(seconds) {
    seconds = Math.floor(seconds);
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s}s`;
    return `${s}s`;
  }

  function formatTime(value) {
    if (!value) return "–";
    const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    return date.toLocaleTimeString([], { hour12: false });
  }

  function badge(text, kind) {
    return el("span", { class: `pd-role pd-role-${kind}` }, text);
  }

  function linkState(up) {
    return el("span", { class: up ? "pd-up" : "pd-down" }, up ? "up" : "down");
  }

  // ---------------------------------------------------------------- connection handling

  function setMode(mode) {
    state.mode = mode;
    const node = $("connection-state");
    node.dataset.mode = mode;
    node.textContent = {
      connecting: "connecting…",
      live: "live (websocket)",
      polling: "polling (websocket down)",
      offline: "node unreachable",
      denied: "logged out: reload to log in",
    }[mode];
  }

  function connect() {
    if (state.socket) return;
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    let socket;
    try {
      socket = new WebSocket(`${scheme}//${window.location.host}${config.ws_path}`);
    } catch (error) {
      onSocketLost();
      return;
    }
    state.socket = socket;
    socket.addEventListener("open", () => {
      state.reconnectDelay = 1000;
      setMode("live");
      stopPolling();
    });
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "snapshot") render(message.snapshot);
    });
    socket.addEventListener("close", () => {
      if (state.socket === socket) {
        state.socket = null;
        onSocketLost();
      }
    });
  }

  function onSocketLost() {
    if (state.mode !== "offline") setMode("polling");
    startPolling();
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(connect, state.reconnectDelay);
    state.reconnectDelay = Math.min(state.reconnectDelay * 2, 10000);
  }

  function startPolling() {
    if (state.pollTimer) return;
    poll();
    state.pollTimer = setInterval(poll, config.poll_ms);
  }

  function stopPolling() {
    clearInterval(state.pollTimer);
    state.pollTimer = null;
  }

  async function poll() {
    try {
      const response = await fetch(config.state_url, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      if (state.mode === "live") return; // the socket came back meanwhile
      if (!response.ok) {
        setMode(response.status === 403 ? "denied" : "offline");
        return;
      }
      render(await response.json());
      state.polls += 1;
      setMode("polling");
    } catch (error) {
      if (state.mode !== "live") setMode("offline");
    }
  }

  // ---------------------------------------------------------------- rendering

  function render(snapshot) {
    state.snapshot = snapshot;
    state.renders += 1;
    $("uptime").textContent = formatDuration(snapshot.uptime_seconds);
    $("updated-at").textContent = formatTime(snapshot.generated_at);
    renderReadiness(snapshot.ready);
    renderGroups(snapshot);
    renderPeers(snapshot);
    renderCommits(snapshot);
    renderEvents(snapshot.events || []);
    drawChart(snapshot);
  }

  function renderReadiness(ready) {
    const node = $("ready-state");
    const ok = ready.status === "ready";
    node.dataset.ready = ok ? "yes" : "no";
    node.textContent = ok ? "ready" : "not ready";
    const reasons = $("ready-reasons");
    const notes = ready.notes || [];
    reasons.hidden = ok && !notes.length;
    reasons.textContent = ok
      ? notes.length ? `Note: ${notes.join("; ")}` : ""
      : `Not ready: ${ready.reasons.join("; ")}`;
  }

  function renderGroups(snapshot) {
    const rows = snapshot.groups.map((group) =>
      el(
        "tr",
        { dataset: { group: group.group_id, role: group.role, leader: group.leader ?? "" } },
        el("td", {}, `group ${group.group_id}`),
        el(
          "td",
          { class: "role" },
          // A node whose database is new follows without voting until it has caught up.
          group.rebuilding ? badge("rebuilding", "rebuilding") : badge(group.role, group.role)
        ),
        el(
          "td",
          { class: "leader" },
          group.leader === null
            ? el("span", { class: "pd-down" }, "unknown")
            : `node ${group.leader}${group.leader === snapshot.node_id ? " (this node)" : ""}`
        ),
        el("td", { class: "ballot" }, group.ballot),
        el("td", {}, group.promised),
        el("td", { class: "pd-num chosen" }, group.chosen_upto),
        el("td", { class: "pd-num applied" }, group.applied),
        el("td", { class: "pd-num" }, group.pending),
        el("td", { class: "pd-num rate" }, (group.commit_rate ?? 0).toFixed(2))
      )
    );
    replaceRows(document.querySelector("#groups-table tbody"), rows);
  }

  function renderPeers(snapshot) {
    const rows = snapshot.peers.map((peer) => {
      const up = peer.connected_out && peer.connected_in;
      return el(
        "tr",
        { dataset: { peer: peer.node_id, up: up ? "yes" : "no" } },
        el("td", {}, el("a", { href: peer.dashboard_url, title: peer.url }, `node ${peer.node_id}`)),
        el("td", {}, linkState(peer.connected_out)),
        el("td", {}, linkState(peer.connected_in)),
        el("td", {}, peer.leads.length ? peer.leads.map((g) => `group ${g}`).join(", ") : "–"),
        ...peer.groups.map((progress) =>
          el(
            "td",
            {
              class: up ? "pd-num" : "pd-num pd-muted",
              title:
                progress.chosen === null
                  ? "not known here (followers learn peers' progress only from the leader)"
                  : `${up ? "" : "last known: "}peer has chosen up to ${progress.chosen}`,
            },
            progress.lag === null ? "?" : progress.lag
          )
        ),
        el("td", { class: "pd-num" }, peer.messages_sent),
        el("td", { class: "pd-num" }, peer.messages_received),
        el("td", { class: "pd-num" }, peer.reconnects),
        // An error from before the link came up is history, not news.
        el("td", { class: "pd-error" }, up ? "" : peer.last_error || "")
      );
    });
    replaceRows(document.querySelector("#peers-table tbody"), rows);
  }

  function renderCommits(snapshot) {
    for (const group of snapshot.groups) {
      const box = $(`commits-group-${group.group_id}`);
      if (!box) continue;
      const rows = group.latest.map((entry) => {
        let commands;
        if (entry.noop) {
          commands = el("span", { class: "pd-muted" }, "no-op");
        } else {
          commands = el(
            "ul",
            { class: "pd-commands" },
            ...entry.commands.map((command) =>
              command.barrier
                ? el("li", { class: "pd-muted" }, "read barrier")
                : el(
                    "li",
                    { dataset: { requestId: command.request_id } },
                    el("code", { class: "pd-rid" }, command.request_id),
                    " ",
                    el("code", {}, command.payload)
                  )
            ),
            entry.more ? el("li", { class: "pd-muted" }, `+${entry.more} more`) : null
          );
        }
        return el(
          "tr",
          { dataset: { instance: entry.instance } },
          el("td", { class: "pd-num" }, entry.instance),
          el("td", {}, entry.ballot || "–"),
          el("td", {}, formatTime(entry.chosen_at)),
          el("td", {}, commands)
        );
      });
      if (!rows.length) {
        rows.push(el("tr", {}, el("td", { colspan: 4, class: "pd-muted" }, "nothing applied yet")));
      }
      replaceRows(box.querySelector("tbody"), rows);
    }
  }

  function renderEvents(events) {
    const list = $("events");
    if (!events.length) {
      list.replaceChildren(el("li", { class: "pd-muted" }, "none yet"));
      return;
    }
    list.replaceChildren(
      ...events.slice(0, 12).map((event) =>
        el(
          "li",
          {},
          el("span", { class: "pd-muted" }, formatTime(event.at)),
          " ",
          event.group_id ? el("strong", {}, `group ${event.group_id}: `) : null,
          event.text
        )
      )
    );
  }

  // ---------------------------------------------------------------- the commits/s chart

  function drawChart(snapshot) {
    const canvas = $("commit-chart");
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || canvas.width;
    const height = canvas.clientHeight || canvas.height;
    if (canvas.width !== width * ratio) {
      canvas.width = width * ratio;
      canvas.height = height * ratio;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const style = getComputedStyle(document.body);
    const fg = style.getPropertyValue("--body-quiet-color").trim() || "#666";
    const grid = style.getPropertyValue("--hairline-color").trim() || "#e8e8e8";
    const series = snapshot.rate.series;
    const groups = snapshot.groups.map((group) => group.group_id);
    const all = groups.flatMap((g) => series[String(g)] || []);
    const step = niceCeiling(Math.max(1, ...all) / 4);
    const top = step * 4;
    const left = 40;
    const right = 8;
    const topPad = 8;
    const bottom = 20;
    const plotW = width - left - right;
    const plotH = height - topPad - bottom;
    ctx.font = "11px sans-serif";
    ctx.fillStyle = fg;
    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = topPad + plotH - (plotH * i) / 4;
      ctx.beginPath();
      ctx.moveTo(left, y + 0.5);
      ctx.lineTo(width - right, y + 0.5);
      ctx.stroke();
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      ctx.fillText(formatRate((top * i) / 4), left - 6, y);
    }
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.fillText(`-${snapshot.rate.seconds}s`, left, topPad + plotH + 4);
    ctx.textAlign = "right";
    ctx.fillText("now", width - right, topPad + plotH + 4);
    groups.forEach((groupId, index) => {
      const points = series[String(groupId)] || [];
      if (!points.length) return;
      ctx.strokeStyle = groupColor(groupId, index);
      ctx.lineWidth = 2;
      ctx.beginPath();
      points.forEach((value, i) => {
        const x = left + (plotW * i) / Math.max(1, points.length - 1);
        const y = topPad + plotH - (plotH * value) / top;
        if (i === 0) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      });
      ctx.stroke();
    });
    $("chart-legend").replaceChildren(
      ...groups.map((groupId, index) => {
        const points = series[String(groupId)] || [];
        const last = points.length ? points[points.length - 1] : 0;
        return el(
          "span",
          { class: "pd-legend-item" },
          el("i", { style: `background:${groupColor(groupId, index)}` }),
          `group ${groupId}: ${last}/s now`
        );
      })
    );
  }

  function niceCeiling(value) {
    if (value <= 0.25) return 0.25;
    const magnitude = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 5, 10]) {
      if (value <= step * magnitude) return step * magnitude;
    }
    return 10 * magnitude;
  }

  function formatRate(value) {
    return value >= 1000 ? `${(value / 1000).toFixed(1)}k` : String(Number(value.toFixed(2)));
  }

  // ---------------------------------------------------------------- the submit form

  function showResult(kind, parts) {
    const box = $("submit-result");
    box.hidden = false;
    box.dataset.kind = kind;
    box.replaceChildren(...parts);
  }

  async function onSubmit(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const button = $("submit-button");
    button.disabled = true;
    showResult("pending", [el("span", { class: "pd-muted" }, "waiting for a majority…")]);
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      let body;
      try {
        body = await response.json();
      } catch (error) {
        body = { error: `HTTP ${response.status}` };
      }
      if (response.ok) {
        showResult("ok", [
          el("div", {}, el("strong", {}, "Chosen"), ` in group ${body.group_id} at instance `,
            el("strong", { id: "submit-instance" }, body.instance),
            body.duplicate ? " (a retry: the first result)" : ""),
          el("div", {}, "request id ", el("code", { id: "submit-request-id-result" }, body.request_id)),
          el("div", {}, "result ", el("code", { id: "submit-result-value" }, JSON.stringify(body.result))),
        ]);
        $("submit-request-id").value = "";
      } else {
        showResult("error", [el("strong", {}, `Failed (${response.status}): `), body.error || ""]);
      }
    } catch (error) {
      showResult("error", [el("strong", {}, "Failed: "), "the node did not answer"]);
    } finally {
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------- start

  $("submit-form").addEventListener("submit", onSubmit);
  window.addEventListener("resize", () => state.snapshot && drawChart(state.snapshot));
  // For people poking around in the console, and for the browser test.
  window.paxosDashboard = state;
  setMode("connecting");
  connect();
})();
