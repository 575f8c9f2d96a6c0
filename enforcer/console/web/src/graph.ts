// SVG drawings of a run: the delegation tree (one node per hop) and the
// call graph (one node per identity, one edge per caller -> target), laid
// out by dagre.
import { graphlib, layout } from '@dagrejs/dagre';
import type { GraphEdge, Hop, RunDetail } from './api';

const NS = 'http://www.w3.org/2000/svg';

export function svgEl<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number> = {}, text?: string): SVGElementTagNameMap[K] {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

export function money(usd: number): string {
  return '$' + usd.toFixed(4);
}

interface Box {
  id: string;
  lines: string[];
  cls: string;
  label: string; // accessible name
  onSelect?: () => void;
}

interface Link {
  from: string;
  to: string;
  lines: string[];
  cls: string;
  label: string;
  id: string;
}

const charW = 7.2;
const lineH = 16;

function boxSize(lines: string[]): { width: number; height: number } {
  const w = Math.max(...lines.map((l) => l.length)) * charW + 24;
  return { width: Math.max(90, w), height: lines.length * lineH + 14 };
}

// draw lays out boxes and links with dagre and returns the SVG.
function laidOut(boxes: Box[], links: Link[], rankdir: 'TB' | 'LR'): graphlib.Graph {
  const g = new graphlib.Graph({ multigraph: true });
  g.setGraph({ rankdir, nodesep: 28, ranksep: 56, marginx: 16, marginy: 16 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const b of boxes) g.setNode(b.id, { ...boxSize(b.lines) });
  for (const l of links) {
    const sz = boxSize(l.lines);
    g.setEdge(l.from, l.to, { width: sz.width - 16, height: sz.height - 8, labelpos: 'c' }, l.id);
  }
  layout(g);
  return g;
}

// maxWide is the widest drawing a half-page panel shows legibly: a wider
// left-to-right layout is laid out top to bottom instead.
const maxWide = 900;

function draw(title: string, desc: string, boxes: Box[], links: Link[], rankdir: 'TB' | 'LR'): SVGSVGElement {
  let g = laidOut(boxes, links, rankdir);
  if (rankdir === 'LR' && ((g.graph().width as number) || 0) > maxWide) g = laidOut(boxes, links, 'TB');
  const gl = g.graph();
  const finite = (n: unknown, dflt: number) => (typeof n === 'number' && Number.isFinite(n) && n > 0 ? Math.ceil(n) : dflt);
  const width = finite(gl.width, 200);
  const height = finite(gl.height, 60);
  // Scaled down to the panel's width, never up past its natural size.
  const svg = svgEl('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', style: `max-width: ${width}px`, role: 'group', 'aria-label': title });
  svg.appendChild(svgEl('title', {}, title));
  svg.appendChild(svgEl('desc', {}, desc));
  const defs = svgEl('defs');
  for (const [id, cls] of [['arrow', 'arrow'], ['arrow-denied', 'arrow denied']]) {
    const m = svgEl('marker', { id: title.replace(/\W/g, '') + id, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto-start-reverse' });
    m.appendChild(svgEl('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: cls }));
    defs.appendChild(m);
  }
  svg.appendChild(defs);
  const edgeLayer = svgEl('g', { class: 'edges' });
  for (const l of links) {
    const e = g.edge(l.from, l.to, l.id) as { points: { x: number; y: number }[]; x: number; y: number };
    const d = e.points.map((p, i) => `${i ? 'L' : 'M'} ${p.x.toFixed(1)} ${p.y.toFixed(1)}`).join(' ');
    const denied = l.cls.includes('denied');
    const grp = svgEl('g', { class: 'edge ' + l.cls, 'data-from': l.from, 'data-to': l.to, role: 'img', 'aria-label': l.label });
    grp.appendChild(svgEl('title', {}, l.label));
    grp.appendChild(svgEl('path', { d, 'marker-end': `url(#${title.replace(/\W/g, '')}${denied ? 'arrow-denied' : 'arrow'})` }));
    if (l.lines.length) {
      const sz = boxSize(l.lines);
      grp.appendChild(svgEl('rect', { class: 'edge-label-bg', x: e.x - (sz.width - 16) / 2, y: e.y - (sz.height - 8) / 2, width: sz.width - 16, height: sz.height - 8, rx: 3 }));
      l.lines.forEach((line, i) => {
        grp.appendChild(svgEl('text', { x: e.x, y: e.y - ((l.lines.length - 1) * lineH) / 2 + i * lineH + 4, 'text-anchor': 'middle', class: i === 0 ? 'edge-text' : 'edge-sub' }, line));
      });
    }
    edgeLayer.appendChild(grp);
  }
  svg.appendChild(edgeLayer);
  const nodeLayer = svgEl('g', { class: 'nodes' });
  for (const b of boxes) {
    const n = g.node(b.id) as { x: number; y: number; width: number; height: number };
    const grp = svgEl('g', { class: 'node ' + b.cls, 'data-id': b.id, 'aria-label': b.label });
    if (b.onSelect) {
      grp.setAttribute('tabindex', '0');
      grp.setAttribute('role', 'button');
      grp.addEventListener('click', b.onSelect);
      grp.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') {
          ev.preventDefault();
          b.onSelect!();
        }
      });
    } else {
      grp.setAttribute('role', 'img');
    }
    if (!b.onSelect) grp.appendChild(svgEl('title', {}, b.label)); // a button's name is its aria-label
    grp.appendChild(svgEl('rect', { x: n.x - n.width / 2, y: n.y - n.height / 2, width: n.width, height: n.height, rx: 6 }));
    b.lines.forEach((line, i) => {
      // The trailing space (not rendered) keeps the lines apart in the
      // node's text, which its accessible name must contain.
      grp.appendChild(svgEl('text', { x: n.x, y: n.y - ((b.lines.length - 1) * lineH) / 2 + i * lineH + 4, 'text-anchor': 'middle', class: i === 0 ? 'node-text' : 'node-sub' }, line + ' '));
    });
    nodeLayer.appendChild(grp);
  }
  svg.appendChild(nodeLayer);
  return svg;
}

export function hopClass(h: Hop): string {
  const c = [h.decision.startsWith('denied') ? 'denied' : h.decision.startsWith('held') ? 'held' : 'allowed'];
  if (h.cycle) c.push('cycle');
  if (h.breach) c.push('tripped');
  if (h.status === 'canceled' || h.status === 'timed_out') c.push('cut');
  if (h.status === 'open' || h.status === 'pending') c.push('open');
  if (h.tainted) c.push('tainted');
  if (h.retries?.length) c.push('retried');
  if (h.reroutes?.length) c.push('rerouted');
  return c.join(' ');
}

// deliveryMarks are a hop's retries and re-routes in a few words.
export function deliveryMarks(h: Hop): string[] {
  const out: string[] = [];
  if (h.retries?.length) out.push(`⟳ retried ×${h.retries.length}`);
  if (h.reroutes?.length) out.push(`↪ fallback from ${h.reroutes.map((r) => r.from).join(', ')}`);
  return out;
}

// delegationTree draws one node per hop below its parent hop.
export function delegationTree(run: RunDetail, onSelect: (h: Hop) => void): SVGSVGElement {
  const boxes: Box[] = [];
  const links: Link[] = [];
  const ids = new Set(run.hops.map((h) => h.hop_id));
  const roots = new Set<string>();
  for (const h of run.hops) {
    const marks = [h.cycle ? '↻ cycle' : '', h.breach ? `tripped ${h.breach.limit}` : '', h.tainted ? 'tainted' : '', ...deliveryMarks(h)].filter(Boolean).join(' · ');
    const lines = [`#${h.seq} ${h.from} → ${h.to}`, `${h.decision}${h.reason && h.decision.startsWith('denied') ? ' (' + h.reason + ')' : ''} · ${h.status}`];
    if (h.tokens || h.cost_usd) lines.push(`${h.tokens} tok · ${money(h.cost_usd)}`);
    if (marks) lines.push(marks);
    boxes.push({ id: 'hop:' + h.hop_id, lines, cls: hopClass(h), label: `${lines.join(' ')} (show details)`, onSelect: () => onSelect(h) });
    if (h.parent_hop_id && ids.has(h.parent_hop_id)) {
      links.push({ from: 'hop:' + h.parent_hop_id, to: 'hop:' + h.hop_id, lines: [], cls: hopClass(h), label: `hop ${h.seq} delegated from its parent`, id: 'l' + h.seq });
    } else {
      const root = 'principal:' + h.from;
      if (!roots.has(root)) {
        roots.add(root);
        boxes.push({ id: root, lines: [h.from, h.from_type || ''], cls: 'principal', label: `${h.from_type || 'principal'} ${h.from}` });
      }
      links.push({ from: root, to: 'hop:' + h.hop_id, lines: [], cls: hopClass(h), label: `${h.from} started hop ${h.seq}`, id: 'l' + h.seq });
    }
  }
  if (run.halt) {
    boxes.push({ id: 'halt', lines: [`■ halted (#${run.halt.seq})`, `by ${run.halt.by}`, run.halt.limit ? `limit ${run.halt.limit}` : run.halt.reason.slice(0, 40)], cls: 'halt', label: `Run halted by ${run.halt.by}: ${run.halt.reason}` });
    const tripped = run.hops.find((h) => h.breach && h.breach_action === 'halt') || run.hops[run.hops.length - 1];
    if (tripped) links.push({ from: 'hop:' + tripped.hop_id, to: 'halt', lines: [], cls: 'denied halt-link', label: 'the run halted here', id: 'halt' });
  }
  return draw('Delegation tree', 'Every hop of the run below the hop that delegated it, in ledger order.', boxes, links, 'TB');
}

function edgeClass(e: GraphEdge): string {
  const c: string[] = [];
  if (e.denied > 0) c.push('denied');
  if (e.denied > 0 && e.allowed === 0) c.push('only-denied');
  if (e.cycles) c.push('cycle');
  if (e.tripped?.length) c.push('tripped');
  // An edge only re-routed away from carried no call: its target was
  // unavailable and the hop went to a fallback.
  if (e.calls === 0 && e.rerouted) c.push('rerouted-away');
  if (!c.length) c.push('allowed');
  if (e.retries) c.push('retried');
  if (e.fallbacks) c.push('fallback');
  return c.join(' ');
}

// callGraph draws one node per identity with what it spent, and one edge
// per caller -> target with its calls.
export function callGraph(run: RunDetail, onSelectAgent: (id: string) => void): SVGSVGElement {
  const boxes: Box[] = run.graph.nodes.map((n) => {
    const c = run.cost_by_agent[n.id];
    const lines = [n.id, `${n.type || 'identity'}${c ? ` · ${c.hops} hop${c.hops === 1 ? '' : 's'}` : ''}`];
    lines.push(c ? `${c.tokens} tok · ${money(c.cost_usd)}` : 'spent nothing');
    const halted = run.halt && run.hops.some((h) => h.breach && h.to === n.id && h.breach_action === 'halt');
    return { id: n.id, lines, cls: 'agent ' + (n.type || '').toLowerCase() + (halted ? ' halted-at' : ''), label: `${lines.join(' ')} (show its hops)`, onSelect: () => onSelectAgent(n.id) };
  });
  const links: Link[] = run.graph.edges.map((e, i) => {
    const first = e.calls || !e.rerouted ? [`${e.calls} call${e.calls === 1 ? '' : 's'}`] : [];
    if (e.denied) first.push(`${e.denied} denied`);
    if (e.cycles) first.push(`${e.cycles} ↻cycle`);
    if (e.rerouted) first.push(`${e.rerouted} re-routed away`);
    const lines = [first.join(', ')];
    if (e.tripped?.length) lines.push('tripped ' + e.tripped.join(','));
    const delivery = [e.retries ? `⟳ ${e.retries} retried` : '', e.fallbacks ? `↪ ${e.fallbacks} as fallback` : ''].filter(Boolean);
    if (delivery.length) lines.push(delivery.join(', '));
    lines.push(`${e.tokens} tok · ${money(e.cost_usd)}`);
    return { from: e.from, to: e.to, lines, cls: edgeClass(e), label: `${e.from} to ${e.to}: ${lines.join('; ')}`, id: 'e' + i };
  });
  return draw('Call graph', 'One node per identity with its spend, one edge per caller and target with its calls; denied and cycle edges in red, retried and fallback edges marked, a target re-routed away from dashed grey.', boxes, links, 'LR');
}
