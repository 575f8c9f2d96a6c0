// Two unmodified @a2a-js/sdk 1.3.0 A2A servers (express) for the Tollgate
// interop tests: "v1" speaks A2A v1.0 only; "legacy" has legacyCompat on
// every handler and lists only its v0.3 interface, so a client (the
// Tollgate bridge) reads its v0.3 card and talks v0.3 JSON-RPC to it.
// Prints {"v1": url, "legacy": url} on one line, then serves until killed.
import express from 'express';
import { Role, TaskState } from '@a2a-js/sdk';
import { DefaultRequestHandler, InMemoryTaskStore } from '@a2a-js/sdk/server';
import { agentCardHandler, jsonRpcHandler, UserBuilder } from '@a2a-js/sdk/server/express';

const text = (parts) => (parts || []).map((p) => (p.content && p.content.$case === 'text' ? p.content.value : '')).join('');

class EchoExecutor {
  constructor(name) { this.name = name; }
  async execute(ctx, bus) {
    const msg = ctx.userMessage;
    const task = { id: ctx.taskId, contextId: ctx.contextId, status: { state: TaskState.TASK_STATE_SUBMITTED, message: undefined, timestamp: undefined }, artifacts: [], history: [msg], metadata: undefined };
    bus.publish({ kind: 'task', data: task });
    bus.publish({ kind: 'artifactUpdate', data: {
      taskId: ctx.taskId, contextId: ctx.contextId, append: false, lastChunk: true, metadata: undefined,
      artifact: { artifactId: 'answer', name: 'answer', description: '', extensions: [], metadata: undefined,
        parts: [{ content: { $case: 'text', value: `${this.name} (js) echoes: ${text(msg.parts)}` }, metadata: undefined, filename: '', mediaType: 'text/plain' }] },
    } });
    bus.publish({ kind: 'statusUpdate', data: {
      taskId: ctx.taskId, contextId: ctx.contextId,
      status: { state: TaskState.TASK_STATE_COMPLETED, message: undefined, timestamp: new Date().toISOString() },
      metadata: { 'tollgate.usage': { input_tokens: 7, output_tokens: 3, cost_usd: 0.001 } },
    } });
    bus.finished();
  }
  async cancelTask(taskId, bus) {
    bus.publish({ kind: 'statusUpdate', data: { taskId, contextId: '', status: { state: TaskState.TASK_STATE_CANCELED, message: undefined, timestamp: undefined }, metadata: undefined } });
    bus.finished();
  }
}

function serve(name, legacy) {
  return new Promise((resolve) => {
    const app = express();
    const server = app.listen(0, '127.0.0.1', () => {
      const url = `http://127.0.0.1:${server.address().port}`;
      const card = {
        name, description: `${name}, an unmodified @a2a-js/sdk server`, version: '1.0.0', provider: undefined,
        supportedInterfaces: [{ url: `${url}/`, protocolBinding: 'JSONRPC', tenant: '', protocolVersion: '1.0' }],
        capabilities: { streaming: true, pushNotifications: false, extensions: [] },
        securitySchemes: {}, securityRequirements: [], defaultInputModes: ['text/plain'], defaultOutputModes: ['text/plain'],
        skills: [{ id: 'echo', name: 'echo', description: 'echoes', tags: ['echo'], examples: [], inputModes: [], outputModes: [], securityRequirements: [] }],
        signatures: [],
      };
      // The legacy server offers only its v0.3 interface: a client must talk v0.3 to it.
      if (legacy) card.supportedInterfaces = [{ url: `${url}/`, protocolBinding: 'JSONRPC', tenant: '', protocolVersion: '0.3' }];
      const handler = new DefaultRequestHandler(card, new InMemoryTaskStore(), new EchoExecutor(name));
      const compat = legacy ? { legacyCompat: { enabled: true } } : {};
      app.use('/.well-known/agent-card.json', agentCardHandler({ agentCardProvider: handler, ...compat }));
      app.use('/', jsonRpcHandler({ requestHandler: handler, userBuilder: UserBuilder.noAuthentication, ...compat }));
      resolve(url);
    });
  });
}

const [v1, legacy] = await Promise.all([serve('jsagent', false), serve('jslegacy', true)]);
console.log(JSON.stringify({ v1, legacy }));
