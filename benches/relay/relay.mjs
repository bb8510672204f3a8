// A yardstick for `switchboard loadtest steady --saturate`: a hand-rolled
// relay that does switchboard's per-message work for the subset of the
// guest and agent protocols the load tool speaks, in the most direct way a
// Node.js developer would write it (ws + ioredis). Not a product: one
// process, no auth, no offer timeouts, no session expiry, no retention.
//
// Per visitor message, as switchboard: the session's rate-limit counter
// (the same Lua script), XADD to the conversation's stream, the ack only
// once XADD answered, then PUBLISH on the conversation's channel; the
// subscriber delivers to the agent's sockets and the session's other
// sockets, in sequence order, each event once. Per agent message the same
// minus the rate limit. An offer goes to the first available agent with
// room (RELAY_AGENT_CAPACITY conversations).
//
// Where it is cheaper than switchboard, on purpose: sequences and the
// events an accept's snapshot needs live in this process's memory (one
// node only), and nothing but the log touches Redis.
//
// Environment: RELAY_LISTEN (127.0.0.1:8090), REDIS_URL
// (redis://127.0.0.1:6379), RELAY_PREFIX (relay:), RELAY_AGENT_CAPACITY (50).

import http from 'node:http';
import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { WebSocketServer } from 'ws';

const [host, port] = (process.env.RELAY_LISTEN ?? '127.0.0.1:8090').split(':');
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = process.env.RELAY_PREFIX ?? 'relay:';
const capacity = Number(process.env.RELAY_AGENT_CAPACITY ?? 50);
const RATE_LIMIT = 2; // messages per session per second, as switchboard
const MAX_TEXT = 4000;

// Commands (pipelined automatically) and the subscriber.
const redis = new Redis(redisUrl, { enableAutoPipelining: true });
const sub = new Redis(redisUrl);
redis.defineCommand('count', {
  numberOfKeys: 1,
  lua: `local n = redis.call("INCR", KEYS[1])
if n == 1 or redis.call("PTTL", KEYS[1]) == -1 then redis.call("PEXPIRE", KEYS[1], ARGV[1]) end
return n`,
});

const sessions = new Map(); // token -> {token, conversation, sockets: Set}
const conversations = new Map(); // id -> conversation
const agents = new Map(); // id -> {id, available, held: Set, offered: Set, sockets: Set}
const waiting = []; // conversation ids, oldest first
let socketIds = 0;

const now = () => new Date().toISOString();
const send = (ws, frame) => {
  if (ws.readyState === ws.OPEN) ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
};

// --- the log: XADD before the ack, PUBLISH after ---------------------------

async function append(conversation, event, origin) {
  event.sequence = ++conversation.seq;
  event.conversationId = conversation.id;
  event.id = randomUUID();
  event.time = now();
  const json = JSON.stringify(event);
  await redis.xadd(`${prefix}{${conversation.id}}:log`, '*', 'e', json);
  conversation.events.push(event);
  redis.publish(`${prefix}{${conversation.id}}:live`, `${origin}|${json}`).catch(() => {});
  return event;
}

sub.on('message', (channel, payload) => {
  const bar = payload.indexOf('|');
  const origin = Number(payload.slice(0, bar));
  const event = JSON.parse(payload.slice(bar + 1));
  const conversation = conversations.get(event.conversationId);
  if (!conversation) return;
  const session = sessions.get(conversation.session);
  if (session && (event.from.role === 'agent' || session.sockets.size > 1)) {
    const frame = guestFrame('message', null, event);
    for (const ws of session.sockets) {
      if (ws.id !== origin && deliverOnce(ws, event)) send(ws, frame);
    }
  }
  const agent = conversation.agent && agents.get(conversation.agent);
  if (agent && conversation.state === 'connected') {
    const frame = JSON.stringify({ type: 'event', ...event });
    for (const ws of agent.sockets) {
      if (deliverOnce(ws, event)) send(ws, frame);
    }
  }
});

// Each socket keeps the last sequence it was given per conversation.
function deliverOnce(ws, event) {
  const last = ws.sent.get(event.conversationId) ?? 0;
  if (event.sequence <= last) return false;
  ws.sent.set(event.conversationId, event.sequence);
  return true;
}

// --- guests -----------------------------------------------------------------

function guestFrame(type, tracingId, event) {
  const agent = event.from.role === 'agent';
  const body = {
    id: event.id,
    type: event.kind === 'message' ? 'Text' : 'Event',
    text: event.text ?? '',
    direction: agent ? 'Outbound' : 'Inbound',
    originatingEntity: 'Human',
    channel: {
      time: event.time,
      messageId: event.id,
      type: 'Private',
      ...(agent ? { from: { nickname: event.from.name } } : {}),
    },
    content: [],
    events: event.kind === 'presence'
      ? [{ eventType: 'Presence', presence: { type: event.presence } }]
      : [],
    metadata: { sequence: String(event.sequence), conversationId: event.conversationId },
    sequence: event.sequence,
    conversationId: event.conversationId,
    ...(event.clientMessageId ? { clientMessageId: event.clientMessageId } : {}),
  };
  return JSON.stringify({ type, class: 'StructuredMessage', code: 200, body, ...(tracingId ? { tracingId } : {}) });
}

const guestError = (ws, tracingId, code, body) =>
  send(ws, { type: 'response', class: 'string', code, body, ...(typeof tracingId === 'string' ? { tracingId } : {}) });

function guest(ws) {
  ws.on('message', async (data) => {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return guestError(ws, null, 400, 'malformed JSON');
    }
    const { action, token, tracingId } = frame;
    try {
      if (action === 'configureSession') {
        if (typeof token !== 'string') return guestError(ws, tracingId, 4020, 'missing parameter: token');
        let session = sessions.get(token);
        const newSession = !session;
        if (!session) sessions.set(token, (session = { token, conversation: null, sockets: new Set() }));
        session.sockets.add(ws);
        ws.session = session;
        send(ws, {
          type: 'response', class: 'SessionResponse', code: 200, tracingId,
          body: { connected: true, newSession, readOnly: false, clearedExistingSession: false },
        });
      } else if (action === 'onMessage') {
        await onMessage(ws, frame);
      } else if (action === 'echo') {
        send(ws, { type: 'response', class: 'StructuredMessage', code: 200, tracingId, body: frame.message ?? {} });
      } else {
        guestError(ws, tracingId, 400, `unknown action: ${action}`);
      }
    } catch (e) {
      guestError(ws, tracingId, 5000, 'unexpected: retry');
    }
  });
  ws.on('close', () => ws.session?.sockets.delete(ws));
}

async function onMessage(ws, { token, tracingId, message }) {
  const session = ws.session;
  if (!session || session.token !== token) return guestError(ws, tracingId, 4007, 'session not found');
  const text = message?.text;
  if (typeof text !== 'string') return guestError(ws, tracingId, 4020, 'missing parameter: message.text');
  if (text.length > MAX_TEXT) return guestError(ws, tracingId, 4011, 'message too long');
  const count = await redis.count(`${prefix}rate:${token}`, 1000);
  if (count > RATE_LIMIT) {
    return send(ws, {
      type: 'response', class: 'TooManyRequestsErrorMessage', code: 429, tracingId,
      body: { retryAfter: 1, errorCode: 4029, errorMessage: 'Message rate too high for this session' },
    });
  }
  let conversation = session.conversation && conversations.get(session.conversation);
  const opened = !conversation;
  if (opened) conversation = await openConversation(session);
  const clientId = message.id;
  let event = clientId && conversation.byClientId.get(clientId);
  if (!event) {
    event = { kind: 'message', messageType: 'Text', text, from: { role: 'visitor', name: 'Visitor' } };
    if (clientId) {
      event.clientMessageId = clientId;
      conversation.byClientId.set(clientId, event);
    }
    await append(conversation, event, ws.id);
  }
  send(ws, guestFrame('response', tracingId, event));
  if (opened) offer(conversation);
}

async function openConversation(session) {
  const id = randomUUID();
  const conversation = {
    id, session: session.token, seq: 0, events: [], byClientId: new Map(),
    state: 'waiting', agent: null, createdAt: now(),
  };
  conversations.set(id, conversation);
  session.conversation = id;
  await sub.subscribe(`${prefix}{${id}}:live`);
  waiting.push(id);
  return conversation;
}

// --- agents -----------------------------------------------------------------

function view(conversation) {
  return {
    id: conversation.id, state: conversation.state, queueId: 'relay', deploymentId: 'relay',
    createdAt: conversation.createdAt, visitor: { authenticated: false, displayName: 'Visitor' },
  };
}

// The first available agent with room takes the oldest waiting conversation.
function offer() {
  while (waiting.length > 0) {
    const agent = [...agents.values()].find(
      (a) => a.available && a.sockets.size > 0 && a.held.size + a.offered.size < capacity,
    );
    if (!agent) return;
    const conversation = conversations.get(waiting.shift());
    if (!conversation || conversation.state !== 'waiting') continue;
    conversation.state = 'offered';
    conversation.agent = agent.id;
    agent.offered.add(conversation.id);
    const frame = JSON.stringify({ type: 'offer', conversation: view(conversation) });
    for (const ws of agent.sockets) send(ws, frame);
  }
}

// Every conversation the agent holds, with the events this socket lacks.
function snapshot(agent, ws) {
  const held = [...agent.held, ...agent.offered].map((id) => conversations.get(id)).filter(Boolean);
  return {
    type: 'snapshot',
    agent: { id: agent.id, name: agent.id, status: agent.available ? 'available' : 'away', queues: [] },
    conversations: held.map((c) => {
      const events = c.state === 'connected'
        ? c.events.filter((e) => deliverOnce(ws, e)).map((e) => ({ ...e }))
        : [];
      return { ...view(c), events, lastSequence: c.seq };
    }),
  };
}

function agentSocket(ws, agentId) {
  let agent = agents.get(agentId);
  if (!agent) {
    agents.set(agentId, (agent = { id: agentId, available: false, held: new Set(), offered: new Set(), sockets: new Set() }));
  }
  agent.sockets.add(ws);
  send(ws, snapshot(agent, ws));
  const answer = (requestId, result) => send(ws, { type: 'response', requestId, ok: true, ...(result ? { result } : {}) });
  const refuse = (requestId, code, message) => send(ws, { type: 'response', requestId, ok: false, error: { code, message } });

  ws.on('message', async (data) => {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return refuse(undefined, 'bad_request', 'not JSON');
    }
    const { type, requestId, conversationId } = frame;
    const conversation = conversations.get(conversationId);
    try {
      switch (type) {
        case 'setPresence':
          agent.available = frame.status === 'available';
          answer(requestId, { status: agent.available ? 'available' : 'away', queues: [] });
          return offer();
        case 'accept': {
          if (!conversation || conversation.state !== 'offered' || conversation.agent !== agent.id) {
            return refuse(requestId, 'not_allowed', 'there is no offer of this conversation to you');
          }
          conversation.state = 'connected';
          agent.offered.delete(conversation.id);
          agent.held.add(conversation.id);
          answer(requestId, { conversation: view(conversation) });
          for (const socket of agent.sockets) send(socket, snapshot(agent, socket));
          await append(conversation, { kind: 'presence', presence: 'Join', from: { role: 'agent', id: agent.id, name: agent.id } }, ws.id);
          return;
        }
        case 'send': {
          if (!conversation || conversation.state !== 'connected' || conversation.agent !== agent.id) {
            return refuse(requestId, 'not_allowed', 'not connected to this conversation');
          }
          if (typeof frame.text !== 'string' || frame.text.length === 0 || frame.text.length > MAX_TEXT) {
            return refuse(requestId, 'bad_request', 'text must be 1 to 4000 characters');
          }
          const previous = frame.id && conversation.byClientId.get(frame.id);
          if (previous) return answer(requestId, { sequence: previous.sequence, duplicate: true });
          const event = { kind: 'message', messageType: 'Text', text: frame.text, from: { role: 'agent', id: agent.id, name: agent.id } };
          if (frame.id) {
            event.clientMessageId = frame.id;
            conversation.byClientId.set(frame.id, event);
          }
          await append(conversation, event, -1);
          return answer(requestId, { sequence: event.sequence, duplicate: false });
        }
        case 'end': {
          if (!conversation || conversation.state !== 'connected' || conversation.agent !== agent.id) {
            return refuse(requestId, 'not_allowed', 'not connected to this conversation');
          }
          await append(conversation, { kind: 'presence', presence: 'Disconnect', from: { role: 'agent', id: agent.id, name: agent.id } }, -1);
          conversation.state = 'ended';
          agent.held.delete(conversation.id);
          conversations.delete(conversation.id);
          const session = sessions.get(conversation.session);
          if (session?.conversation === conversation.id) session.conversation = null;
          sub.unsubscribe(`${prefix}{${conversation.id}}:live`).catch(() => {});
          answer(requestId, { conversation: { id: conversation.id, state: 'ended' } });
          return offer();
        }
        case 'ping':
          return answer(requestId);
        default:
          return refuse(requestId, 'bad_request', `unknown type: ${type}`);
      }
    } catch {
      refuse(requestId, 'unavailable', 'storage is unavailable; try again');
    }
  });
  ws.on('close', () => {
    agent.sockets.delete(ws);
    if (agent.sockets.size > 0) return;
    // Offers go back to the queue; what is held stays (as in a grace period).
    agent.available = false;
    for (const id of agent.offered) {
      const conversation = conversations.get(id);
      if (conversation) {
        conversation.state = 'waiting';
        conversation.agent = null;
        waiting.unshift(id);
      }
    }
    agent.offered.clear();
    offer();
  });
}

// --- the server -------------------------------------------------------------

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 64 * 1024 });

const server = http.createServer((req, res) => {
  const ready = req.url === '/readyz' ? redis.status === 'ready' : req.url === '/healthz';
  res.writeHead(ready ? 200 : 404, { 'content-type': 'application/json' });
  res.end(JSON.stringify(ready ? { status: 'ok' } : { code: 'not_found', message: 'unknown endpoint' }));
});

server.on('connection', (socket) => socket.setNoDelay(true));

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://relay');
  const refuse = (status, code) => {
    socket.end(`HTTP/1.1 ${status}\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{"code":"${code}"}`);
  };
  let onSocket;
  if (url.pathname === '/v1') {
    if (!url.searchParams.get('deploymentId')) return refuse('403 Forbidden', 'forbidden');
    onSocket = guest;
  } else if (url.pathname === '/api/v2/agent/ws') {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!token) return refuse('401 Unauthorized', 'unauthorized');
    onSocket = (ws) => agentSocket(ws, token);
  } else {
    return refuse('404 Not Found', 'not_found');
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.id = ++socketIds;
    ws.sent = new Map();
    onSocket(ws);
  });
});

server.listen(Number(port), host, () => {
  console.error(`relay listening on ${host}:${port}, Redis ${redisUrl}, prefix ${prefix}`);
});

const stop = () => {
  server.close();
  for (const ws of wss.clients) ws.terminate();
  Promise.allSettled([redis.quit(), sub.quit()]).then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
