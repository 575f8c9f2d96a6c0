// The console's API (enforcer/console/api.go): types as the server sends
// them, and fetch helpers that send the session cookie.

export const base = '/console';

export interface Session {
  role: 'reader' | 'operator';
  name: string;
}

export interface RunRow {
  run_id: string;
  status: string;
  started_at: string;
  last_at: string;
  caller?: string;
  on_behalf_of?: string;
  workflow?: string;
  root_agent?: string;
  events: number;
  hops: number;
  denied: number;
  cycles?: number;
  tokens: number;
  cost_usd: number;
  agents: string[];
  breach?: string;
  halted_by?: string;
  pending_approval?: string[];
  looping: boolean;
  awaiting_approval: boolean;
}

export interface GuardrailFinding {
  rule?: string;
  category?: string;
  severity?: string;
  part?: string;
  excerpt?: string;
  [k: string]: unknown;
}

export interface Guardrail {
  verdict?: string;
  findings?: GuardrailFinding[];
  [k: string]: unknown;
}

// An attempt the gateway made again (hop.retried): attempt is the new
// attempt's number at `to`.
export interface Retry {
  attempt: number;
  to: string;
  cause: string;
  error_class?: string;
  error?: string;
  retry_at: string;
  seq: number;
}

// A re-route to a fallback (hop.rerouted).
export interface Reroute {
  from: string;
  to: string;
  cause: string;
  skipped?: string[];
  seq: number;
}

// One attempt of a retried or re-routed hop with its outcome (n 0: a
// target re-routed away from before anything was delivered).
export interface Attempt {
  n: number;
  to: string;
  outcome: string;
  cause?: string;
  error_class?: string;
  error?: string;
  tokens?: number;
  cost_usd?: number;
  seq?: number;
}

export interface Hop {
  retries?: Retry[];
  reroutes?: Reroute[];
  attempts?: Attempt[];
  hop_id: string;
  parent_hop_id?: string;
  from: string;
  from_type?: string;
  to: string;
  to_type?: string;
  action?: string;
  depth: number;
  decision: string;
  reason?: string;
  message?: string;
  policy_ids?: string[];
  audit?: unknown[];
  cycle?: boolean;
  breach?: { limit: string; value: number; bound: number };
  breach_action?: string;
  breach_seq?: number;
  status: string;
  closed_by?: string;
  error?: string;
  latency_ms?: number;
  tokens: number;
  cost_usd: number;
  seq: number;
  closed_seq?: number;
  at: string;
  trace_id?: string;
  span_id?: string;
  approval?: { outcome: string; by?: string; note?: string; approvers?: string[]; policy_ids: string[]; deadline: string };
  guardrail?: Guardrail;
  reply_guardrail?: Guardrail;
  tainted?: boolean;
  taint_sources?: string[];
  input?: string;
  output?: string;
}

export interface GraphNode {
  id: string;
  type?: string;
}

export interface GraphEdge {
  from: string;
  to: string;
  calls: number;
  allowed: number;
  denied: number;
  cycles?: number;
  tripped?: string[];
  tokens: number;
  cost_usd: number;
  retries?: number;
  rerouted?: number;
  fallbacks?: number;
}

export interface Verification {
  run_id: string;
  events: number;
  chain: string;
  signatures: string;
  signatures_checked: number;
  broken?: { seq: number; stream_seq?: number; type?: string; hop_id?: string; kind: string; problem: string };
  valid_events: number;
  head_hash: string;
}

export interface RunDetail {
  run_id: string;
  caller?: string;
  on_behalf_of?: string;
  workflow?: string;
  trace_id?: string;
  status: string;
  halted: boolean;
  started_at?: string;
  last_at?: string;
  events: number;
  as_of?: number;
  hops: Hop[];
  breaches?: { limit: string; value: number; bound: number; action: string; hop_id?: string; from?: string; to?: string }[];
  halt?: { seq: number; at: string; by: string; reason: string; limit?: string; cancelled?: string[] };
  cost_by_agent: Record<string, { hops: number; tokens: number; cost_usd: number }>;
  tokens: number;
  cost_usd: number;
  open_hops?: string[];
  head_hash: string;
  graph: { nodes: GraphNode[]; edges: GraphEdge[] };
  verification: Verification;
  timeline: { seq: number; type: string; at: string; hop_id?: string }[];
  trace_url?: string;
  payloads: boolean;
}

export interface WhatIfHop {
  seq: number;
  hop_id: string;
  from: string;
  to: string;
  recorded: { decision: string; reason?: string; limit?: string; policy_ids?: string[] };
  candidate?: { decision: string; reason?: string; limit?: string; policy_ids?: string[] };
  change?: string;
  pruned_by?: string;
  note?: string;
}

export interface WhatIfReport {
  run_id: string;
  source?: string;
  policies: string[];
  decisions: number;
  evaluated: number;
  changed: number;
  would_not_happen: number;
  first_change?: number;
  hops: WhatIfHop[];
  avoided: { hops: number; tokens: number; cost_usd: number };
  vanished?: { seq: number; type: string; what: string; because: string }[];
}

export interface SpendReport {
  dimension: string;
  sql: string;
  bucket_seconds: number;
  rows: { at: string; key: string; hops: number; tokens: number; cost_usd: number }[];
}

export class HttpError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
}

async function answer<T>(r: Response): Promise<T> {
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) {
    throw new HttpError(r.status, (body && body.error) || r.statusText);
  }
  return body as T;
}

export async function get<T>(path: string): Promise<T> {
  return answer<T>(await fetch(base + path, { credentials: 'same-origin', headers: { Accept: 'application/json' } }));
}

export async function post<T>(path: string, body: unknown): Promise<T> {
  return answer<T>(
    await fetch(base + path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body),
    }),
  );
}
