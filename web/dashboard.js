// ballast's dashboard: polls the daemon's read-only JSON API (/api/v1/) every two seconds and
// draws the host and each guest over time with uPlot. No build step, no framework.

(() => {
  const POLL_MS = 2000;
  const KEEP = 900; // points kept per series (30 minutes at one poll every 2 s)
  const MAX_GUEST_CHARTS = 12;
  const MiB = 1024; // samples are KiB

  const $ = (sel) => document.querySelector(sel);
  const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const mib = (kib) => (num(kib) === null ? null : kib / MiB);
  const fmt = (kib) => (num(kib) === null ? '–' : Math.round(kib / MiB).toLocaleString());
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

  async function get(path) {
    const r = await fetch(`/api/v1/${path}`, { cache: 'no-store' });
    if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
    return r.json();
  }

  const state = {
    host: { t: [], total: [], free: [], guestsUsed: [], ksmSaved: [], swapUsed: [] },
    guests: new Map(), // name -> { t, actual, target, used, available }
    lastHostTime: -Infinity,
    eventsSince: 0,
    errors: [],
    wallClock: false,
  };

  function push(series, key, value) {
    const a = series[key];
    a.push(value);
    if (a.length > KEEP) a.shift();
  }

  function axes(unit) {
    return [state.wallClock ? {} : { label: 'daemon time (s)' }, { label: unit, size: 60 }];
  }

  function makeChart(el, title, labels, colors) {
    const width = Math.max(300, el.clientWidth || 600);
    return new uPlot(
      {
        title,
        width,
        height: 220,
        scales: { x: { time: state.wallClock } },
        axes: axes('MiB'),
        series: [{}, ...labels.map((label, i) => ({ label, stroke: colors[i], width: 1.5, spanGaps: true }))],
      },
      [[]],
      el,
    );
  }

  let hostChart = null;
  const guestCharts = new Map();

  function hostPoint(time, s, guests) {
    const h = state.host;
    push(h, 't', time);
    push(h, 'total', mib(s.mem_available));
    push(h, 'free', mib(s.mem_free));
    let used = 0;
    for (const g of guests ?? []) {
      const cur = num(g.stats.balloon_cur);
      const unused = num(g.stats.mem_unused);
      if (cur !== null && unused !== null) used += cur - unused;
    }
    push(h, 'guestsUsed', guests ? used / MiB : null);
    push(h, 'ksmSaved', num(s.ksm_pages_sharing) === null ? null : (s.ksm_pages_sharing * 4) / MiB);
    push(h, 'swapUsed', mib(s.swap_usage));
  }

  function guestPoint(name, time, s, target) {
    let g = state.guests.get(name);
    if (!g) {
      g = { t: [], actual: [], target: [], used: [], available: [] };
      state.guests.set(name, g);
    }
    if (g.t.length && g.t[g.t.length - 1] >= time) return;
    const cur = num(s.balloon_cur);
    const unused = num(s.mem_unused);
    push(g, 't', time);
    push(g, 'actual', mib(cur));
    push(g, 'target', mib(target ?? null));
    push(g, 'used', cur !== null && unused !== null ? (cur - unused) / MiB : null);
    push(g, 'available', mib(num(s.mem_usable) ?? num(s.mem_free)));
  }

  function drawHost() {
    const h = state.host;
    if (!hostChart) {
      hostChart = makeChart(
        $('#host-chart'),
        'Host',
        ['total', 'free', 'used by guests', 'KSM saved', 'swap used'],
        ['#1d2330', '#2e7d32', '#1565c0', '#8e24aa', '#c62828'],
      );
    }
    hostChart.setData([h.t, h.total, h.free, h.guestsUsed, h.ksmSaved, h.swapUsed]);
  }

  function drawGuests(list) {
    const box = $('#guest-charts');
    const shown = list.slice(0, MAX_GUEST_CHARTS).map((g) => g.name);
    for (const [name, c] of guestCharts) {
      if (!shown.includes(name)) {
        c.chart.destroy();
        c.el.remove();
        guestCharts.delete(name);
      }
    }
    for (const name of shown) {
      let c = guestCharts.get(name);
      if (!c) {
        const el = document.createElement('div');
        el.className = 'guest-chart';
        el.dataset.guest = name;
        box.appendChild(el);
        c = { el, chart: makeChart(el, name, ['balloon actual', 'balloon target', 'used', 'available'], ['#1565c0', '#ef6c00', '#c62828', '#2e7d32']) };
        guestCharts.set(name, c);
      }
      const g = state.guests.get(name);
      if (g) c.chart.setData([g.t, g.actual, g.target, g.used, g.available]);
    }
  }

  function renderTable(list, now) {
    const rows = list.map((g) => {
      const s = g.stats;
      const cur = num(s.balloon_cur);
      const unused = num(s.mem_unused);
      const stall = num(s.psi_some_avg10);
      const other = g.movedByOther && g.movedByOther.until > now ? g.movedByOther : null;
      const note = g.stale
        ? `stale: ${g.stale}`
        : other
          ? `balloon set to ${fmt(other.to)} MiB by another manager: left alone until t=${Math.round(other.until)}`
          : g.holdUntil !== undefined && g.holdUntil > now
            ? `held off inflation until t=${Math.round(g.holdUntil)}`
            : '';
      return (
        `<tr data-guest="${esc(g.name)}"><td>${esc(g.name)}</td><td>${fmt(cur)}</td><td>${fmt(g.lastTarget)}</td><td>${fmt(s.balloon_max)}</td>` +
        `<td>${cur !== null && unused !== null ? fmt(cur - unused) : '–'}</td><td>${fmt(num(s.mem_usable) ?? num(s.mem_free))}</td>` +
        `<td class="stall">${stall === null ? '–' : `${stall.toFixed(1)}%`}</td>` +
        `<td>${g.balloonReturn ? `${fmt(g.balloonReturn.returnedKiB)} / ${fmt(g.balloonReturn.expectedKiB)} / ${fmt(g.balloonReturn.inflatedKiB)}` : '–'}</td><td>${esc(note)}</td></tr>`
      );
    });
    $('#guests tbody').innerHTML = rows.join('') || '<tr><td colspan="9">no guests</td></tr>';
  }

  function renderActions(actions) {
    const items = actions
      .slice(-60)
      .reverse()
      .map((a) => {
        const what =
          a.result === 'veto' || a.result === 'ignored'
            ? `asked ${a.control === 'balloon_target' && num(a.requested) !== null ? `${fmt(a.requested)} MiB` : JSON.stringify(a.requested ?? null)}`
            : a.control === 'balloon_target'
              ? `${fmt(a.from)} → ${fmt(a.to)} MiB`
              : `${a.from ?? '?'} → ${a.to ?? (a.requested !== undefined ? JSON.stringify(a.requested) : '–')}`;
        const cls = a.result === 'applied' ? '' : a.result;
        return `<li class="${esc(cls)}"><b>${esc(a.entity)}</b> ${esc(a.control)} ${esc(what)} <i>${esc(a.result)}</i>${a.guardPass ? ' <small>by the guard between policy cycles</small>' : ''} — ${esc((a.reasons ?? []).join('; '))}${a.error ? ` (${esc(a.error)})` : ''}</li>`;
      });
    $('#actions').innerHTML = items.join('') || '<li>none yet</li>';
  }

  function renderAlerts(alerts) {
    $('#alerts').innerHTML =
      alerts.map((a) => `<li class="${a.severity === 'critical' ? 'error' : 'veto'}">${esc(a.severity)}: ${esc(a.message)}</li>`).join('') || '<li>none</li>';
  }

  function renderErrors() {
    $('#errors').innerHTML =
      state.errors
        .slice(-30)
        .reverse()
        .map((e) => {
          const f = e.fields ?? {};
          const detail = f.message ?? f.msg ?? f.error ?? f.reason ?? '';
          return `<li class="${e.level === 'error' ? 'error' : 'veto'}">${esc(e.ts.slice(11, 19))} ${esc(e.event)} ${esc(f.entity ?? f.guest ?? '')} ${esc(Array.isArray(detail) ? detail.join('; ') : detail)}</li>`;
        })
        .join('') || '<li>none</li>';
  }

  function renderPolicies(list) {
    $('#policies').innerHTML =
      list.map((p) => `<li>${esc(p.name)} <i>${esc(p.source)}${p.path ? `: ${esc(p.path)}` : ''}</i></li>`).join('') || '<li>no policy in force</li>';
  }

  function renderHealth(h) {
    const pill = $('#status');
    pill.textContent = h.paused ? 'paused (observe only)' : h.status;
    pill.className = `pill ${h.paused ? 'paused' : h.status}`;
    $('#meta').textContent =
      `${h.hypervisor} · cycle ${h.cycle}${h.calm ? ' (calm)' : ''} · t=${Math.round(h.time)} s${h.policyLoaded ? '' : ' · NO POLICY'}${h.problems.length ? ` · ${h.problems.join('; ')}` : ''}`;
  }

  let polls = 0;
  async function poll() {
    try {
      const [health, host, guests, actions, alerts, events] = await Promise.all([
        get('health'),
        get('host'),
        get('guests'),
        get('actions'),
        get('alerts'),
        get(`events?since=${state.eventsSince}`),
      ]);
      state.wallClock = health.time > 1e9;
      renderHealth(health);
      if (polls === 0) {
        // Start from the daemon's own history so the charts are not empty at first.
        await Promise.all(
          guests.slice(0, MAX_GUEST_CHARTS).map(async (g) => {
            const full = await get(`guests/${encodeURIComponent(g.name)}`);
            for (const p of full.history ?? []) guestPoint(g.name, p.time, p.stats, null);
          }),
        );
      }
      // Every host sample since the last poll (the daemon keeps its newest few); the guests'
      // sum and the guests' own points are as of now.
      const history = host.history ?? [];
      for (const p of history.slice(0, -1)) {
        if (p.time > state.lastHostTime) {
          hostPoint(p.time, p.stats, null);
          state.lastHostTime = p.time;
        }
      }
      const hostTime = history.length ? history[history.length - 1].time : health.time;
      if (hostTime > state.lastHostTime) {
        state.lastHostTime = hostTime;
        hostPoint(hostTime, host.stats, guests);
        for (const g of guests) guestPoint(g.name, hostTime, g.stats, g.lastTarget);
      }
      for (const e of events) {
        state.eventsSince = Math.max(state.eventsSince, e.seq);
        if (e.level === 'warn' || e.level === 'error') state.errors.push(e);
      }
      if (state.errors.length > 200) state.errors.splice(0, state.errors.length - 200);
      drawHost();
      drawGuests(guests);
      renderTable(guests, health.time);
      renderActions(actions);
      renderAlerts(alerts);
      renderErrors();
      if (polls % 5 === 0) renderPolicies(await get('policies'));
      polls++;
    } catch (err) {
      const pill = $('#status');
      pill.textContent = `no answer: ${err.message}`;
      pill.className = 'pill down';
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  // For tests and the curious: what the charts hold.
  window.ballastDashboard = {
    points: () => ({ host: state.host.t.length, guests: Object.fromEntries([...state.guests].map(([n, g]) => [n, g.t.length])) }),
    charts: () => ({
      host: hostChart ? hostChart.data[0].length : 0,
      guests: Object.fromEntries([...guestCharts].map(([n, c]) => [n, c.chart.data[0].length])),
    }),
  };
  poll();
})();
