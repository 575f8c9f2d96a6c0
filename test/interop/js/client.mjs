// An unmodified @a2a-js/sdk 1.3.0 client for the Tollgate interop tests.
// usage: node client.mjs <gateway base URL> <agent> <bearer token> <v1|v03> <text>
// Reads the agent's card from the gateway, sends one message (A2A v1.0, or
// v0.3 through legacyCompat), and prints one JSON line:
// {"state": ..., "text": ..., "contextId": ...} or {"error": ..., "code": ...}.
import { ClientFactory, ClientFactoryOptions, DefaultAgentCardResolver, JsonRpcTransportFactory } from '@a2a-js/sdk/client';
import { Role, TaskState } from '@a2a-js/sdk';

const [base, agent, token, mode, words] = process.argv.slice(2);
const authFetch = (url, init = {}) => {
  const headers = new Headers(init.headers || {});
  headers.set('Authorization', `Bearer ${token}`);
  return fetch(url, { ...init, headers });
};
const legacyCompat = { enabled: mode === 'v03' };
const resolver = new DefaultAgentCardResolver({ fetchImpl: authFetch, legacyCompat });
const factory = new ClientFactory(ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
  transports: [new JsonRpcTransportFactory({ fetchImpl: authFetch, legacyCompat })],
  cardResolver: resolver,
}));
const text = (parts) => (parts || []).map((p) => (p.content && p.content.$case === 'text' ? p.content.value : '')).join('');

try {
  const card = await resolver.resolve(`${base}/${agent}/.well-known/agent-card.json`, "");
  // v03: talk to the gateway's v0.3 JSON-RPC interface only.
  const want = mode === 'v03' ? '0.3' : '1.0';
  card.supportedInterfaces = card.supportedInterfaces.filter((i) => i.protocolBinding === 'JSONRPC' && i.protocolVersion === want);
  if (card.supportedInterfaces.length === 0) throw new Error(`the card lists no ${want} JSON-RPC interface`);
  const client = await factory.createFromAgentCard(card);
  const res = await client.sendMessage({
    tenant: '', message: { messageId: `js-${Date.now()}-${Math.random()}`, contextId: '', taskId: '', role: Role.ROLE_USER,
      parts: [{ content: { $case: 'text', value: words }, metadata: undefined, filename: '', mediaType: '' }],
      metadata: undefined, extensions: [], referenceTaskIds: [] },
    configuration: undefined, metadata: undefined,
  });
  const task = res && res.id !== undefined ? res : undefined;
  const out = task
    ? { state: TaskState[task.status.state] ?? String(task.status.state), text: text(task.status.message && task.status.message.parts) + (task.artifacts || []).map((a) => text(a.parts)).join(''), contextId: task.contextId }
    : { state: 'message', text: text(res.parts), contextId: res.contextId };
  console.log(JSON.stringify(out));
} catch (e) {
  console.log(JSON.stringify({ error: String(e && e.message || e), code: e && (e.code ?? (e.error && e.error.code)) }));
}
