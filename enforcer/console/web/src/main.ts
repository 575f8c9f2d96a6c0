// The Tollgate console: runs list, run page, spend. Every value shown is
// set as text (never as HTML): ledger contents are untrusted.
import './style.css';
import { base, get, post, HttpError } from './api';
import type { Hop, RunDetail, RunRow, Session, SpendReport, WhatIfReport } from './api';
import { callGraph, deliveryMarks, delegationTree, hopClass, money } from './graph';

type Child = Node | string | null | undefined | false;

function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string | boolean | ((e: Event) => void)> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === 'function') e.addEventListener(k.slice(2), v as EventListener);
    else if (v === true) e.setAttribute(k, '');
    else if (v !== false) e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

const main = document.getElementById('main')!;
const who = document.getElementById('who')!;
let session: Session | null = null;
let events: EventSource | null = null;
const listeners = new Set<(r: RunRow) => void>();

function fmtTime(s?: string): string {
  if (!s) return '—';
  const d = new Date(s);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function badge(text: string, cls: string): HTMLElement {
  return h('span', { class: 'badge ' + cls }, text);
}

function statusBadges(r: { status: string; looping?: boolean; awaiting_approval?: boolean; breach?: string }): HTMLElement {
  return h(
    'span',
    { class: 'badges' },
    badge(r.status, 'status-' + r.status),
    r.looping ? badge('looping', 'looping') : null,
    r.awaiting_approval ? badge('awaiting approval', 'pending') : null,
    r.breach ? badge('limit ' + r.breach, 'tripped') : null,
  );
}

function setTitle(t: string) {
  document.title = t + ' · Tollgate console';
}

function navigate(path: string) {
  history.pushState(null, '', path);
  route();
}

function link(path: string, text: string, attrs: Record<string, string> = {}): HTMLAnchorElement {
  return h('a', {
    href: path,
    ...attrs,
    onclick: (e: Event) => {
      const me = e as MouseEvent;
      if (me.ctrlKey || me.metaKey || me.shiftKey) return;
      e.preventDefault();
      navigate(path);
    },
  }, text);
}

function showError(err: unknown) {
  main.replaceChildren(h('section', { class: 'panel error', role: 'alert' }, h('h1', {}, 'Something went wrong'), h('p', {}, String(err instanceof Error ? err.message : err))));
}

// ---- login ----

function loginPage(message?: string) {
  setTitle('Log in');
  who.replaceChildren();
  const err = h('p', { class: 'form-error', role: 'alert', id: 'login-error' }, message || '');
  const tokenForm = h(
    'form',
    { class: 'panel', 'aria-labelledby': 'token-h' },
    h('h2', { id: 'token-h' }, 'Console token (read access)'),
    h('label', { for: 'token' }, 'Token'),
    h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true }),
    h('button', { type: 'submit' }, 'Log in with token'),
  );
  tokenForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    await doLogin({ token: (document.getElementById('token') as HTMLInputElement).value.trim() }, err);
  });
  const opForm = h(
    'form',
    { class: 'panel', 'aria-labelledby': 'op-h' },
    h('h2', { id: 'op-h' }, 'Operator (read and halt)'),
    h('label', { for: 'operator' }, 'Operator id'),
    h('input', { id: 'operator', name: 'operator', autocomplete: 'username', required: true }),
    h('label', { for: 'seed' }, 'Operator nkey seed (the key the CLI signs with; kept in the server’s memory for this session only)'),
    h('textarea', { id: 'seed', name: 'seed', rows: '2', autocomplete: 'off', spellcheck: 'false', required: true }),
    h('button', { type: 'submit' }, 'Log in as operator'),
  );
  opForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    await doLogin({ operator: (document.getElementById('operator') as HTMLInputElement).value.trim(), seed: (document.getElementById('seed') as HTMLTextAreaElement).value.trim() }, err);
  });
  main.replaceChildren(h('h1', {}, 'Log in to the Tollgate console'), err, h('div', { class: 'login' }, tokenForm, opForm));
}

async function doLogin(body: unknown, err: HTMLElement) {
  try {
    session = await post<Session>('/api/login', body);
    route();
  } catch (e) {
    err.textContent = e instanceof Error ? e.message : String(e);
  }
}

function renderWho() {
  if (!session) return;
  const out = h('button', { type: 'button', class: 'link-button', onclick: async () => {
    await post('/api/logout', {});
    session = null;
    events?.close();
    events = null;
    loginPage('Logged out.');
  } }, 'Log out');
  who.replaceChildren(h('span', {}, `${session.name} (${session.role})`), ' ', out);
}

// ---- live events ----

function ensureEvents() {
  if (events) return;
  events = new EventSource(base + '/api/events');
  events.addEventListener('run', (ev) => {
    const r = JSON.parse((ev as MessageEvent).data) as RunRow;
    for (const l of listeners) l(r);
  });
  events.addEventListener('hello', () => document.body.setAttribute('data-live', 'on'));
  events.onerror = () => document.body.setAttribute('data-live', 'reconnecting');
}

// ---- runs list ----

async function runsPage() {
  setTitle('Runs');
  const params = new URLSearchParams(location.search);
  const search = h('input', { id: 'q', type: 'search', name: 'q', value: params.get('q') || '', placeholder: 'run, principal, workflow, agent…' });
  const statusSel = h('select', { id: 'status', name: 'status' }, h('option', { value: '' }, 'any status'),
    ...['running', 'completed', 'failed', 'canceled', 'halted', 'rejected'].map((s) => h('option', { value: s }, s)));
  statusSel.value = params.get('status') || '';
  const tbody = h('tbody');
  const count = h('p', { class: 'muted', 'aria-live': 'polite', id: 'runs-count' });
  const table = h('table', { class: 'runs', 'aria-describedby': 'runs-count' },
    h('caption', { class: 'sr-only' }, 'Runs, newest first'),
    h('thead', {}, h('tr', {}, ...['Run', 'Status', 'Principal', 'Workflow', 'Root agent', 'Hops', 'Denied', 'Spend', 'Started'].map((c) => h('th', { scope: 'col' }, c)))),
    tbody);
  let rows: RunRow[] = [];
  const matches = (r: RunRow) => {
    const q = search.value.trim().toLowerCase();
    const st = statusSel.value;
    if (st && r.status !== st) return false;
    if (!q) return true;
    return [r.run_id, r.caller, r.on_behalf_of, r.workflow, r.root_agent, r.status, r.breach, ...r.agents].some((f) => (f || '').toLowerCase().includes(q));
  };
  const render = () => {
    const shown = rows.filter(matches).sort((a, b) => (b.started_at.localeCompare(a.started_at) || b.run_id.localeCompare(a.run_id)));
    tbody.replaceChildren(...shown.map((r) => h('tr', { 'data-run': r.run_id, class: r.status },
      h('td', {}, link(`${base}/runs/${r.run_id}`, r.run_id, { class: 'mono' })),
      h('td', {}, statusBadges(r)),
      h('td', {}, r.on_behalf_of || r.caller || '—'),
      h('td', {}, r.workflow || '—'),
      h('td', {}, r.root_agent || '—'),
      h('td', { class: 'num' }, String(r.hops)),
      h('td', { class: 'num' }, String(r.denied)),
      h('td', { class: 'num' }, `${money(r.cost_usd)} · ${r.tokens} tok`),
      h('td', {}, fmtTime(r.started_at)),
    )));
    count.textContent = `${shown.length} of ${rows.length} runs shown, newest first; live.`;
    const u = new URLSearchParams();
    if (search.value) u.set('q', search.value);
    if (statusSel.value) u.set('status', statusSel.value);
    history.replaceState(null, '', `${base}/${u.toString() ? '?' + u : ''}`);
  };
  search.addEventListener('input', render);
  statusSel.addEventListener('change', render);
  const filters = h('form', { class: 'filters', role: 'search', onsubmit: (e: Event) => e.preventDefault() },
    h('label', { for: 'q' }, 'Search'), search, h('label', { for: 'status' }, 'Status'), statusSel);
  main.replaceChildren(h('h1', {}, 'Runs'), filters, count, table);
  const data = await get<{ runs: RunRow[] }>('/api/runs');
  rows = data.runs;
  render();
  listeners.clear();
  listeners.add((r) => {
    const i = rows.findIndex((x) => x.run_id === r.run_id);
    if (i >= 0) rows[i] = r;
    else rows.push(r);
    render();
  });
}

// ---- run page ----

function kv(...pairs: [string, Child][]): HTMLElement {
  return h('dl', { class: 'kv' }, ...pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));
}

function traceLink(run: RunDetail, hop: Hop): Child {
  const trace = hop.trace_id || run.trace_id;
  if (!trace) return '—';
  const text = `${trace}${hop.span_id ? ' / ' + hop.span_id : ''}`;
  if (!run.trace_url) return h('span', { class: 'mono' }, text);
  const url = run.trace_url.replace('{trace_id}', encodeURIComponent(trace)).replace('{span_id}', encodeURIComponent(hop.span_id || ''));
  return h('a', { href: url, target: '_blank', rel: 'noopener noreferrer', class: 'mono' }, text);
}

function guardrailText(g?: { verdict?: string; findings?: { rule?: string; action?: string; path?: string }[] }): Child {
  if (!g) return 'none';
  const f = (g.findings || []).map((x) => `${x.rule || '?'} (${x.action || ''}${x.path ? ' at ' + x.path : ''})`).join('; ');
  return `${g.verdict || 'scanned'}${f ? ': ' + f : ''}`;
}

// answerForm lets an operator approve or reject a hop held for approval
// (the operator's signed command, as tollgate approve/reject sends it).
function answerForm(run: RunDetail, hop: Hop, done: () => Promise<void>): Child {
  if (session?.role !== 'operator' || hop.status !== 'pending') return null;
  const note = h('input', { id: 'answer-note', name: 'note', placeholder: 'note (required to reject: the caller is told it)' });
  const msg = h('p', { role: 'status', id: 'answer-msg' });
  const send = async (verb: 'approve' | 'reject') => {
    try {
      const rep = await post<{ ledger_seq?: number; error?: string }>(`/api/runs/${encodeURIComponent(run.run_id)}/hops/${encodeURIComponent(hop.hop_id)}/${verb}`, { note: note.value });
      msg.textContent = rep.error ? rep.error : `${verb === 'approve' ? 'Approved' : 'Rejected'} (ledger event #${rep.ledger_seq}).`;
      await done();
    } catch (e) {
      msg.textContent = `${verb} failed: ` + (e instanceof Error ? e.message : String(e));
    }
  };
  return h('form', { class: 'answer-form', 'aria-labelledby': 'answer-h', onsubmit: (e: Event) => e.preventDefault() },
    h('h3', { id: 'answer-h' }, 'Held for approval'),
    h('label', { for: 'answer-note' }, 'Note'), note,
    h('button', { type: 'button', onclick: () => void send('approve') }, 'Approve'),
    h('button', { type: 'button', class: 'danger', onclick: () => void send('reject') }, 'Reject'), msg);
}

// attemptsList lists every attempt of a retried or re-routed hop with its
// outcome: the gateway's own retries and re-routes, as the ledger has them.
function attemptsList(hop: Hop): Child {
  if (!hop.attempts?.length) return 'one (no retry, no re-route)';
  return h('ol', { class: 'attempts', id: 'attempts' }, ...hop.attempts.map((a) => {
    // Why, in the words the outcome does not already say.
    const why = [a.cause, a.error_class].filter((x) => x && x !== a.outcome).join(' ');
    const what = a.n === 0 ? `${a.to}: not delivered (${a.outcome}${why ? ': ' + why : ''})`
      : `attempt ${a.n} → ${a.to}: ${a.outcome}${why ? ' (' + why + ')' : ''}`;
    const spend = a.tokens || a.cost_usd ? ` · ${a.tokens || 0} tok · ${money(a.cost_usd || 0)}` : '';
    return h('li', { class: 'attempt attempt-' + a.outcome }, `${what}${a.error ? ': ' + a.error : ''}${spend}${a.seq ? ' (#' + a.seq + ')' : ''}`);
  }));
}

function reroutesText(hop: Hop): Child {
  if (!hop.reroutes?.length) return 'none';
  return h('ul', { class: 'reroutes', id: 'reroutes' }, ...hop.reroutes.map((r) => h('li', {},
    `#${r.seq} ${r.from} → ${r.to} (${r.cause})${r.skipped?.length ? '; passed over: ' + r.skipped.join(', ') : ''}`)));
}

function hopDetail(run: RunDetail, hop: Hop, done: () => Promise<void> = async () => {}): HTMLElement {
  return h('section', { class: 'panel hop-detail', 'aria-labelledby': 'hop-h', id: 'hop-detail' },
    h('h2', { id: 'hop-h', tabindex: '-1' }, `Hop #${hop.seq}: ${hop.from} → ${hop.to}`),
    kv(
      ['Hop id', h('span', { class: 'mono' }, hop.hop_id)],
      ['Action', hop.action || 'invoke'],
      ['Depth', String(hop.depth)],
      ['Decision', h('span', { class: 'decision ' + hopClass(hop) }, hop.decision)],
      ['Reason', [hop.reason, hop.message].filter(Boolean).join(': ') || '—'],
      ['Policies', (hop.policy_ids || []).join(', ') || '—'],
      ['Cycle', hop.cycle ? '↻ the target was already in the ancestry' : 'no'],
      ['Tripped limit', hop.breach ? `${hop.breach.limit}: ${hop.breach.value} > ${hop.breach.bound}${hop.breach_action ? ' → ' + hop.breach_action : ''}` : 'none'],
      ['Guardrail (message in)', guardrailText(hop.guardrail)],
      ['Guardrail (reply)', guardrailText(hop.reply_guardrail)],
      ['Taint', hop.tainted ? 'tainted: ' + (hop.taint_sources || []).join(', ') : 'clean'],
      ['Approval', hop.approval ? `${hop.approval.outcome}${hop.approval.by ? ' by ' + hop.approval.by : ''}${hop.approval.note ? ': ' + hop.approval.note : ''}` : '—'],
      ['Status', `${hop.status}${hop.closed_by ? ' (closed by ' + hop.closed_by + ')' : ''}${hop.error ? ': ' + hop.error : ''}`],
      ['Attempts', attemptsList(hop)],
      ['Re-routed', reroutesText(hop)],
      ['Tokens', String(hop.tokens)],
      ['Cost', money(hop.cost_usd)],
      ['Latency', hop.latency_ms !== undefined ? `${hop.latency_ms} ms` : '—'],
      ['At', fmtTime(hop.at)],
      ['Trace', traceLink(run, hop)],
    ),
    answerForm(run, hop, done),
    run.payloads ? h('div', {}, h('h3', {}, 'Message in'), h('pre', { class: 'payload' }, hop.input || '—'), h('h3', {}, 'Result out'), h('pre', { class: 'payload' }, hop.output || '—'))
      : h('p', { class: 'muted' }, 'Payloads are not shown (admin.console.payloads is off).'),
  );
}

function verificationPanel(run: RunDetail): HTMLElement {
  const v = run.verification;
  if (v.broken) {
    return h('section', { class: 'panel verify broken', role: 'alert', id: 'verification' }, h('h2', {}, 'Ledger verification FAILED'),
      h('p', {}, `First broken link: event #${v.broken.seq}${v.broken.type ? ' (' + v.broken.type + ')' : ''}${v.broken.hop_id ? ', hop ' + v.broken.hop_id : ''} — ${v.broken.kind}: ${v.broken.problem}`),
      h('p', {}, `The pictures show the first ${v.valid_events} events only.`));
  }
  const sig = v.signatures === 'verified' ? `every admitted envelope's signature checks (${v.signatures_checked})` : `signatures ${v.signatures.replace('_', ' ')}`;
  return h('section', { class: 'panel verify ok', id: 'verification' }, h('h2', {}, 'Ledger verified'), h('p', {}, `${v.events} events, hash chain ${v.chain}; ${sig}; head ${v.head_hash.slice(0, 16)}…`));
}

function legend(): HTMLElement {
  const item = (cls: string, text: string) => h('li', {}, h('span', { class: 'swatch ' + cls, 'aria-hidden': 'true' }), text);
  return h('section', { class: 'legend', 'aria-label': 'Legend' }, h('h2', {}, 'Legend'), h('ul', {},
    item('allowed', 'allowed hop / edge'),
    item('denied', 'denied (red, dashed when nothing passed)'),
    item('cycle', '↻ cycle: the target was already in the ancestry'),
    item('tripped', 'tripped a run limit'),
    item('held', 'held for approval'),
    item('tainted', 'tainted by an untrusted source'),
    item('retried', '⟳ retried: the gateway delivered the hop again'),
    item('rerouted', '↪ re-routed to a fallback (dashed grey: the unavailable target it left)'),
    item('halt', '■ the run was halted here'),
  ));
}

async function runPage(runId: string) {
  setTitle('Run ' + runId);
  const cache = new Map<number, RunDetail>();
  const load = async (at?: number): Promise<RunDetail> => {
    if (at !== undefined && cache.has(at)) return cache.get(at)!;
    const r = await get<RunDetail>(`/api/runs/${encodeURIComponent(runId)}${at !== undefined ? '?at=' + at : ''}`);
    if (at !== undefined) cache.set(at, r);
    return r;
  };
  let latest = await load();
  let shown = latest;
  let selected: string | null = null;

  const header = h('div', { class: 'run-head' });
  const slider = h('input', { type: 'range', id: 'slider', min: '1', max: String(Math.max(1, latest.timeline.length)), value: String(latest.timeline.length), step: '1' });
  const sliderText = h('output', { for: 'slider', id: 'slider-text', 'aria-live': 'polite' });
  const play = h('button', { type: 'button', id: 'play' }, '▶ Replay');
  const tree = h('figure', { class: 'graph', id: 'tree' });
  const graph = h('figure', { class: 'graph', id: 'callgraph' });
  const detail = h('div', { id: 'detail-slot' });
  const hopList = h('ol', { class: 'hop-list', id: 'hop-list', 'aria-label': 'Hops in ledger order' });
  const verify = h('div');
  const actions = h('div', { class: 'actions' });
  const whatIfSlot = h('section', { class: 'panel', 'aria-labelledby': 'whatif-h' });

  const selectHop = (hp: Hop) => {
    selected = hp.hop_id;
    detail.replaceChildren(hopDetail(shown, hp, refresh));
    (document.getElementById('hop-h') as HTMLElement | null)?.focus();
  };
  const selectAgent = (id: string) => {
    const first = shown.hops.find((x) => x.to === id) || shown.hops.find((x) => x.from === id);
    if (first) selectHop(first);
  };

  const render = () => {
    const r = shown;
    const at = r.as_of;
    header.replaceChildren(
      h('h1', {}, 'Run ', h('span', { class: 'mono' }, r.run_id)),
      statusBadges({ status: r.status, looping: r.hops.some((x) => x.cycle), awaiting_approval: r.hops.some((x) => x.status === 'pending'), breach: r.breaches?.[0]?.limit }),
      kv(['Principal', r.on_behalf_of || r.caller || '—'], ['Workflow', r.workflow || '—'], ['Hops', `${r.hops.length} (${r.hops.filter((x) => x.decision.startsWith('denied')).length} denied)`],
        ['Spend', `${money(r.cost_usd)} · ${r.tokens} tokens`], ['Started', fmtTime(r.started_at)], ['Last event', fmtTime(r.last_at)],
        ['Halt', r.halt ? `by ${r.halt.by} at #${r.halt.seq}: ${r.halt.reason}${r.halt.limit ? ' (limit ' + r.halt.limit + ')' : ''}` : 'not halted'],
        ['Trace', r.trace_id ? traceLink(r, { trace_id: r.trace_id } as Hop) : '—']),
    );
    const n = latest.timeline.length;
    const pos = at ?? n;
    const ev = latest.timeline[pos - 1];
    sliderText.textContent = ev ? `event ${pos} of ${n}: ${ev.type} at ${fmtTime(ev.at)}${at === undefined || at === n ? ' (latest' + (latest.status === 'running' ? ', live)' : ')') : ''}` : '';
    tree.replaceChildren(delegationTree(r, selectHop), h('figcaption', {}, 'Delegation tree: each hop below the hop that delegated it. Select a hop for its detail.'));
    graph.replaceChildren(callGraph(r, selectAgent), h('figcaption', {}, 'Call graph: each identity with its spend; edges with their calls.'));
    hopList.replaceChildren(...r.hops.map((hp) => h('li', { class: hopClass(hp) },
      h('button', { type: 'button', class: 'hop-button', 'data-hop': hp.hop_id, onclick: () => selectHop(hp) },
        `#${hp.seq} ${hp.from} → ${hp.to}: ${hp.decision}${hp.cycle ? ' ↻cycle' : ''}${hp.breach ? ' tripped ' + hp.breach.limit : ''}${deliveryMarks(hp).map((m) => ' ' + m).join('')} · ${hp.status}`))));
    verify.replaceChildren(verificationPanel(latest));
    const sel = selected && r.hops.find((x) => x.hop_id === selected);
    detail.replaceChildren(sel ? hopDetail(r, sel, refresh) : h('p', { class: 'muted' }, 'Select a hop in the tree or the list for its decision, reason, policies, guardrail findings, taint, spend, latency and trace.'));
    renderActions();
  };

  const renderActions = () => {
    const items: Child[] = [];
    if (session?.role === 'operator' && !latest.halted && latest.status === 'running') {
      const reason = h('input', { id: 'halt-reason', name: 'reason', required: true, placeholder: 'why (recorded in the ledger and the alert)' });
      const msg = h('p', { role: 'status', id: 'halt-msg' });
      const form = h('form', { class: 'halt-form', 'aria-labelledby': 'halt-h' },
        h('h2', { id: 'halt-h' }, 'Halt this run'),
        h('label', { for: 'halt-reason' }, 'Reason'), reason,
        h('button', { type: 'submit', class: 'danger', id: 'halt-button' }, 'Halt run'), msg);
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        if (!confirm(`Halt run ${runId}? Its open hops are cancelled and every later hop is denied.`)) return;
        try {
          const rep = await post<{ ledger_seq?: number; already?: boolean }>(`/api/runs/${encodeURIComponent(runId)}/halt`, { reason: reason.value });
          msg.textContent = rep.already ? 'The run was already halted.' : `Halted (ledger event #${rep.ledger_seq}).`;
          await refresh();
        } catch (err) {
          msg.textContent = 'Halt failed: ' + (err instanceof Error ? err.message : String(err));
        }
      });
      items.push(form);
    } else if (session?.role !== 'operator' && latest.status === 'running') {
      items.push(h('p', { class: 'muted' }, 'Operators can halt this run (log in with an operator key).'));
    }
    actions.replaceChildren(...items.filter((x): x is Node => !!x && typeof x !== 'string'));
  };

  const refresh = async () => {
    const atEnd = shown === latest || shown.as_of === undefined || shown.as_of === latest.timeline.length;
    latest = await load();
    slider.max = String(latest.timeline.length);
    if (atEnd) {
      shown = latest;
      slider.value = slider.max;
    }
    render();
  };

  let seq = 0;
  slider.addEventListener('input', async () => {
    const want = Number(slider.value);
    const mine = ++seq;
    const r = want >= latest.timeline.length ? latest : await load(want);
    if (mine !== seq) return;
    shown = r;
    render();
  });
  let timer: number | undefined;
  play.addEventListener('click', () => {
    if (timer !== undefined) {
      clearInterval(timer);
      timer = undefined;
      play.textContent = '▶ Replay';
      return;
    }
    slider.value = '1';
    slider.dispatchEvent(new Event('input'));
    play.textContent = '❚❚ Pause';
    timer = window.setInterval(() => {
      if (Number(slider.value) >= latest.timeline.length) {
        clearInterval(timer);
        timer = undefined;
        play.textContent = '▶ Replay';
        return;
      }
      slider.value = String(Number(slider.value) + 1);
      slider.dispatchEvent(new Event('input'));
    }, 700);
  });

  whatIfSlot.replaceChildren(...(await whatIfPanel(runId, (changed) => {
    document.querySelectorAll('.whatif-changed').forEach((e) => e.classList.remove('whatif-changed'));
    for (const id of changed) document.querySelector(`#tree [data-id="hop:${CSS.escape(id)}"]`)?.classList.add('whatif-changed');
  })));

  main.replaceChildren(
    h('p', {}, link(base + '/', '← All runs')),
    header,
    verify,
    h('section', { class: 'panel timeline', 'aria-labelledby': 'slider-h' },
      h('h2', { id: 'slider-h' }, 'Time'),
      h('label', { for: 'slider' }, 'Show the run as of ledger event'), slider, play, sliderText),
    h('div', { class: 'pictures' }, tree, graph),
    legend(),
    h('div', { class: 'below' }, h('section', { class: 'panel', 'aria-labelledby': 'hops-h' }, h('h2', { id: 'hops-h' }, 'Hops'), hopList), detail),
    actions,
    whatIfSlot,
  );
  render();
  listeners.clear();
  listeners.add((r) => {
    if (r.run_id === runId) void refresh();
  });
}

function verdictText(v: { decision: string; reason?: string; limit?: string; policy_ids?: string[] }): string {
  const why = [v.reason, v.limit].filter(Boolean).join(': ');
  return `${v.decision}${why ? ' (' + why + ')' : ''}${v.policy_ids?.length ? ' [' + v.policy_ids.join(', ') + ']' : ''}`;
}

async function whatIfPanel(runId: string, mark: (changed: string[]) => void): Promise<Node[]> {
  const sets = await get<{ sets: { name: string; files: string[] }[] }>('/api/policies');
  const sel = h('select', { id: 'whatif-set', name: 'set' }, ...sets.sets.map((s) => h('option', { value: s.name }, `${s.name} (${s.files.length} files)`)));
  const file = h('input', { id: 'whatif-file', type: 'file', accept: '.cedar', multiple: true });
  const out = h('div', { id: 'whatif-result', 'aria-live': 'polite' });
  const run = async (body: unknown) => {
    out.replaceChildren(h('p', {}, 'Deciding the run again…'));
    try {
      const rep = await post<WhatIfReport>(`/api/runs/${encodeURIComponent(runId)}/whatif`, body);
      const changed = rep.hops.filter((x) => x.change);
      mark(changed.map((x) => x.hop_id));
      out.replaceChildren(
        h('p', { class: 'whatif-summary' }, `${rep.source || ''}: ${rep.changed} of ${rep.decisions} decisions would change; ${rep.would_not_happen} hops would not happen; avoided ${money(rep.avoided.cost_usd)} (${rep.avoided.tokens} tokens).`),
        changed.length ? h('table', { class: 'whatif' },
          h('caption', { class: 'sr-only' }, 'Hops whose decision would change'),
          h('thead', {}, h('tr', {}, ...['Event', 'Hop', 'Recorded', 'Candidate', 'Change'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, ...changed.map((x) => h('tr', {},
            h('td', {}, '#' + x.seq), h('td', {}, `${x.from} → ${x.to}`),
            h('td', {}, verdictText(x.recorded)),
            h('td', {}, x.candidate ? verdictText(x.candidate) : '—'),
            h('td', {}, `${x.change || ''}${x.note ? ': ' + x.note : ''}`)))))
          : h('p', {}, 'No hop would change.'),
      );
    } catch (e) {
      mark([]);
      out.replaceChildren(h('p', { role: 'alert', class: 'form-error' }, e instanceof Error ? e.message : String(e)));
    }
  };
  const setForm = h('form', {}, h('label', { for: 'whatif-set' }, 'A policy set the gateway knows'), sel, h('button', { type: 'submit', id: 'whatif-run' }, 'Run what-if'));
  setForm.addEventListener('submit', (e) => {
    e.preventDefault();
    void run({ set: sel.value });
  });
  const upForm = h('form', {}, h('label', { for: 'whatif-file' }, 'Or upload .cedar files'), file, h('button', { type: 'submit' }, 'Run what-if on upload'));
  upForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const files = await Promise.all(Array.from(file.files || []).map(async (f) => ({ name: f.name, text: await f.text() })));
    if (files.length) void run({ files });
  });
  return [h('h2', { id: 'whatif-h' }, 'What if: would another policy set have decided differently?'), setForm, upForm, out];
}

// ---- spend ----

const palette = ['#1f5fa8', '#a8431f', '#2e7d32', '#6a1b9a', '#8d6e00', '#00695c', '#ad1457', '#37474f'];

async function spendPage() {
  setTitle('Spend');
  const dim = h('select', { id: 'dim', name: 'dimension' }, ...['agent', 'team', 'workflow', 'principal'].map((d) => h('option', { value: d }, d)));
  const since = h('select', { id: 'since', name: 'since' }, ...[['1h', 'last hour'], ['24h', 'last 24 hours'], ['168h', 'last 7 days'], ['720h', 'last 30 days']].map(([v, t]) => h('option', { value: v }, t)));
  since.value = '24h';
  const chart = h('figure', { class: 'chart', id: 'spend-chart' });
  const sql = h('pre', { class: 'sql', id: 'spend-sql' });
  const load = async () => {
    try {
      const rep = await get<SpendReport>(`/api/spend?dimension=${dim.value}&since=${since.value}`);
      chart.replaceChildren(spendChart(rep), h('figcaption', {}, `Cost per ${rep.dimension} per ${rep.bucket_seconds / 60} minutes (ClickHouse).`));
      sql.textContent = rep.sql;
    } catch (e) {
      chart.replaceChildren(h('p', { role: 'alert' }, e instanceof HttpError && e.status === 404 ? e.message : 'Spend could not be read: ' + String(e)));
      sql.textContent = '';
    }
  };
  dim.addEventListener('change', load);
  since.addEventListener('change', load);
  main.replaceChildren(h('h1', {}, 'Spend'),
    h('form', { class: 'filters', onsubmit: (e: Event) => e.preventDefault() }, h('label', { for: 'dim' }, 'Per'), dim, h('label', { for: 'since' }, 'Over'), since),
    chart, h('h2', {}, 'The SQL behind the chart'), sql);
  await load();
}

function spendChart(rep: SpendReport): Node {
  const NS = 'http://www.w3.org/2000/svg';
  const el = (tag: string, attrs: Record<string, string | number>, text?: string) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  };
  if (!rep.rows.length) return h('p', {}, 'No spend in this period.');
  const buckets = [...new Set(rep.rows.map((r) => r.at))].sort();
  const keys = [...new Set(rep.rows.map((r) => r.key))].sort();
  const totals = buckets.map((b) => rep.rows.filter((r) => r.at === b).reduce((s, r) => s + r.cost_usd, 0));
  const max = Math.max(...totals, 1e-9);
  const W = 760, H = 260, L = 70, B = 40;
  const bw = Math.min(60, Math.max(4, (W - L - 10) / buckets.length - 4));
  const svg = el('svg', { viewBox: `0 0 ${W} ${H + 20 * Math.ceil(keys.length / 4)}`, role: 'img', 'aria-label': `Cost per ${rep.dimension} over time` });
  svg.appendChild(el('line', { x1: L, y1: H - B, x2: W, y2: H - B, class: 'axis' }));
  svg.appendChild(el('text', { x: L - 6, y: 14, 'text-anchor': 'end', class: 'tick' }, money(max)));
  svg.appendChild(el('text', { x: L - 6, y: H - B, 'text-anchor': 'end', class: 'tick' }, '$0'));
  buckets.forEach((b, i) => {
    let y = H - B;
    const x = L + 4 + i * (bw + 4);
    for (const [ki, k] of keys.entries()) {
      const r = rep.rows.find((rr) => rr.at === b && rr.key === k);
      if (!r) continue;
      const hgt = ((H - B - 10) * r.cost_usd) / max;
      y -= hgt;
      const rect = el('rect', { x, y, width: bw, height: Math.max(hgt, 0.5), fill: palette[ki % palette.length] });
      rect.appendChild(el('title', {}, `${k} ${fmtTime(b)}: ${money(r.cost_usd)}, ${r.tokens} tokens, ${r.hops} hops`));
      svg.appendChild(rect);
    }
  });
  svg.appendChild(el('text', { x: L, y: H - B + 16, class: 'tick' }, fmtTime(buckets[0])));
  svg.appendChild(el('text', { x: W, y: H - B + 16, 'text-anchor': 'end', class: 'tick' }, fmtTime(buckets[buckets.length - 1])));
  keys.forEach((k, i) => {
    const x = L + (i % 4) * 170, y = H + Math.floor(i / 4) * 20;
    svg.appendChild(el('rect', { x, y: y - 10, width: 12, height: 12, fill: palette[i % palette.length] }));
    svg.appendChild(el('text', { x: x + 18, y, class: 'tick' }, k || '(none)'));
  });
  return svg;
}

// ---- router ----

async function route() {
  if (!session) {
    try {
      session = await get<Session>('/api/session');
    } catch (e) {
      if (e instanceof HttpError && e.status === 401) {
        loginPage();
        return;
      }
      showError(e);
      return;
    }
  }
  renderWho();
  ensureEvents();
  const path = location.pathname.replace(/\/+$/, '');
  document.querySelectorAll('[data-nav]').forEach((a) => a.removeAttribute('aria-current'));
  try {
    const m = path.match(/^\/console\/runs\/([^/]+)$/);
    if (m) {
      document.querySelector('[data-nav="runs"]')?.setAttribute('aria-current', 'page');
      await runPage(decodeURIComponent(m[1]));
    } else if (path === '/console/spend') {
      document.querySelector('[data-nav="spend"]')?.setAttribute('aria-current', 'page');
      await spendPage();
    } else {
      document.querySelector('[data-nav="runs"]')?.setAttribute('aria-current', 'page');
      await runsPage();
    }
    document.body.setAttribute('data-ready', 'true');
  } catch (e) {
    if (e instanceof HttpError && e.status === 401) {
      session = null;
      loginPage('Your session ended; log in again.');
      return;
    }
    showError(e);
  }
}

async function start() {
  // A link printed by `tollgate demo --console` carries a token in its
  // fragment (never sent to the server in the URL): log in with it and
  // drop it from the address bar.
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    history.replaceState(null, '', location.pathname + location.search);
    try {
      session = await post<Session>('/api/login', { token: decodeURIComponent(m[1]) });
    } catch (e) {
      loginPage(e instanceof Error ? e.message : String(e));
      return;
    }
  }
  document.querySelectorAll<HTMLAnchorElement>('[data-nav], .brand').forEach((a) => a.addEventListener('click', (e) => {
    e.preventDefault();
    navigate(a.getAttribute('href')!);
  }));
  window.addEventListener('popstate', () => void route());
  await route();
}

void start();
