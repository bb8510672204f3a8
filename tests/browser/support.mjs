// What the browser tests stand on: real switchboard nodes (the binary
// cargo built, on a free loopback port each: on the embedded engine in a
// throwaway data directory, or several on one throwaway redis-server), the
// real test IdP (tests/idp), the admin records of two deployments (one for
// guests, one requiring sign-in), an agent on the agent WebSocket, and
// Debian's chromium driven by playwright-core.
//
// Every process started here is killed when the tests end, and the IdP
// also watches this process's pid.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';
import WebSocket from 'ws';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const children = new Set();

process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

// The test IdP, with a confidential client whose redirect URIs are given.
export async function startIdp(redirectUris) {
  const dir = join(ROOT, 'tests/idp');
  if (!existsSync(join(dir, 'node_modules/oidc-provider'))) {
    throw new Error('the test IdP is not installed: npm ci --prefix tests/idp');
  }
  const clientId = `widget-${randomBytes(6).toString('hex')}`;
  const clientSecret = `secret-${randomBytes(12).toString('hex')}`;
  const child = track(
    spawn(process.execPath, [join(dir, 'server.mjs')], {
      cwd: dir,
      env: {
        ...process.env,
        IDP_PORT: '0',
        IDP_CLIENT_ID: clientId,
        IDP_CLIENT_SECRET: clientSecret,
        IDP_REDIRECT_URIS: redirectUris.join(' '),
        IDP_WATCH_PID: String(process.pid),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  const port = await new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error('the test IdP did not start')), 30000);
    child.stdout.on('data', (chunk) => {
      buffered += chunk;
      const line = buffered.split('\n')[0];
      if (buffered.includes('\n') && /^\d+$/.test(line.trim())) {
        clearTimeout(timer);
        resolve(Number(line.trim()));
      }
    });
    child.on('exit', (code) => reject(new Error(`the test IdP exited with ${code}`)));
  });
  child.stdout.resume();
  return { issuer: `http://127.0.0.1:${port}`, clientId, clientSecret, stop: () => stopChild(child) };
}

// A throwaway redis-server on a free port, keeping nothing on disk.
export async function startRedis() {
  const port = await freePort();
  const child = track(
    spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    }),
  );
  const deadline = Date.now() + 10000;
  while (!(await redisPing(port))) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error('redis-server did not start');
    await sleep(50);
  }
  return { url: `redis://127.0.0.1:${port}`, stop: () => stopChild(child) };
}

function redisPing(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setTimeout(1000);
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(String(data).startsWith('+PONG'));
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

// Two switchboard nodes on one Redis, serving one contact center: they
// share the key prefix, the master key and the bootstrap token. Each has
// its own address as its public URL, as two hosts would.
export async function startCluster() {
  const redis = await startRedis();
  const shared = {
    redisUrl: redis.url,
    masterKey: randomBytes(32).toString('base64'),
    bootstrap: `sbb_browser_${randomBytes(16).toString('hex')}`,
  };
  const a = await startSwitchboard(shared);
  const b = await startSwitchboard(shared);
  return {
    a,
    b,
    bootstrap: shared.bootstrap,
    async stop() {
      await Promise.all([a.stop(), b.stop()]);
      await redis.stop();
    },
  };
}

// switchboard as built by cargo: on the embedded engine, or on Redis when
// `redisUrl` is given (with the `masterKey` and `bootstrap` every node of
// the contact center shares).
export async function startSwitchboard({ redisUrl, masterKey, bootstrap: sharedBootstrap } = {}) {
  // SWITCHBOARD_BIN may be relative to the repository (scripts/test's is).
  const binary = resolve(ROOT, process.env.SWITCHBOARD_BIN || 'target/debug/switchboard');
  if (!existsSync(binary)) throw new Error(`${binary} is missing: cargo build first`);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const data = mkdtempSync(join(tmpdir(), 'switchboard-browser-'));
  const bootstrap = sharedBootstrap || `sbb_browser_${randomBytes(16).toString('hex')}`;
  const log = [];
  const child = track(
    spawn(binary, ['serve'], {
      env: {
        ...process.env,
        SWITCHBOARD_LISTEN: `127.0.0.1:${port}`,
        SWITCHBOARD_PUBLIC_URL: base,
        SWITCHBOARD_DATA_DIR: data,
        SWITCHBOARD_BOOTSTRAP_TOKEN: bootstrap,
        // The test IdP is plain http on loopback.
        SWITCHBOARD_OIDC_ALLOW_INSECURE: 'true',
        REDIS_URL: redisUrl || '',
        ...(masterKey ? { SWITCHBOARD_MASTER_KEY: masterKey } : {}),
        RUST_LOG: process.env.RUST_LOG || 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  for (const stream of [child.stdout, child.stderr]) {
    stream.setEncoding('utf8');
    stream.on('data', (text) => log.push(text));
  }
  let stopping = false;
  child.on('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`switchboard exited unexpectedly (code ${code}, signal ${signal}):\n${log.join('')}\n`);
    }
  });
  const deadline = Date.now() + 30000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`switchboard exited: ${log.join('')}`);
    try {
      const r = await fetch(`${base}/readyz`);
      if (r.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`switchboard did not get ready: ${log.join('')}`);
    await sleep(100);
  }
  return {
    base,
    bootstrap,
    log,
    async stop() {
      stopping = true;
      await stopChild(child);
      rmSync(data, { recursive: true, force: true });
    },
  };
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// What `fn` answers once it stops throwing, retried every 100 ms; its
// last error (prefixed with `what`) after `timeoutMs`.
export async function eventually(fn, what, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: ${last && last.message}`);
    await sleep(100);
  }
}

// Signs the visitor of `page` in through the widget's popup at the test
// IdP's login form, and waits until the widget lets them send.
export async function widgetSignIn(page, idp, login) {
  const w = widget(page);
  const [popup] = await Promise.all([page.waitForEvent('popup'), w.signIn.click()]);
  await popup.waitForURL(new RegExp(`^${idp.issuer}/`));
  await popup.locator('input[name=login]').fill(login);
  await popup.locator('input[name=password]').fill('any');
  await popup.locator('button[type=submit]').click();
  await popup.waitForEvent('close', { timeout: 20000 });
  await w.signOut.waitFor();
  await eventually(async () => {
    if (await w.input.isDisabled()) throw new Error('the message box is still disabled');
  }, 'sending is possible');
}

// The widget's parts, found by role and name as a person (or a screen
// reader) would (Playwright's locators see into its shadow root).
export function widget(page) {
  return {
    launcher: page.getByRole('button', { name: /^Chat\b/ }),
    panel: page.getByRole('dialog', { name: 'Chat with us' }),
    input: page.getByRole('textbox', { name: 'Message' }),
    send: page.getByRole('button', { name: 'Send' }),
    log: page.getByRole('log', { name: 'Conversation' }),
    signIn: page.getByRole('button', { name: 'Sign in' }),
    signOut: page.getByRole('button', { name: 'Sign out' }),
  };
}

// The admin API with a bearer token.
export function adminApi(base, token) {
  return async function call(method, path, body) {
    const r = await fetch(base + path, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${path}: HTTP ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
}

// An API client of `roles` and an access token for it.
export async function apiClient(base, call, name, roles) {
  const client = await call('POST', '/api/v2/oauth/clients', { name, roles });
  const r = await fetch(`${base}/oauth/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: 'grant_type=client_credentials',
  });
  if (!r.ok) throw new Error(`token: HTTP ${r.status} ${await r.text()}`);
  return { id: client.id, token: (await r.json()).access_token };
}

// Two deployments on switchboard's own origin (so the demo page can
// connect): `guest` lets anyone chat, `signIn` requires signing in at the
// IdP. Both route to one queue. The agent's access token is issued by the
// node at `agentBase` (switchboard's by default): tokens name the public
// URL of the node that issued them.
export async function setUp(sb, idp, { agentBase = sb.base } = {}) {
  const call = adminApi(sb.base, sb.bootstrap);
  const integration = await call('POST', '/api/v2/integrations/oidc', {
    name: 'Test IdP',
    issuer: idp.issuer,
    clientId: idp.clientId,
    clientSecret: idp.clientSecret,
    scopes: ['openid', 'profile', 'email'],
  });
  const conversations = {
    showAgentTypingIndicator: true,
    showUserTypingIndicator: true,
    conversationDisconnect: { enabled: true, type: 'ReadOnly' },
  };
  const configuration = async (name, authenticationSettings) => {
    const c = await call('POST', '/api/v2/webdeployments/configurations', {
      name,
      authenticationSettings,
      messenger: { styles: { primaryColor: '#0b6e4f' }, apps: { conversations } },
    });
    await call('POST', `/api/v2/webdeployments/configurations/${c.id}/versions/draft/publish`, {});
    return c.id;
  };
  const guestConfig = await configuration('Guests', { enabled: false });
  const signInConfig = await configuration('Signed in', { enabled: true, integrationId: integration.id });
  const queue = await call('POST', '/api/v2/routing/queues', {
    name: 'Support',
    offerTimeoutSeconds: 60,
    agentCapacity: 10,
  });
  const deployment = async (name, config) =>
    call('POST', '/api/v2/webdeployments/deployments', {
      name,
      configuration: { id: config, version: '1' },
      allowedDomains: [sb.base],
      status: 'Active',
      queueId: queue.id,
    });
  const guest = await deployment('Guest demo', guestConfig);
  const signIn = await deployment('Sign-in demo', signInConfig);
  const agent = await apiClient(agentBase, adminApi(agentBase, sb.bootstrap), 'Ada', ['agent']);
  return { call, integration, guestConfig, signInConfig, guest, signIn, queue, agent };
}

// An agent on the agent WebSocket: every frame it got, and requests
// answered by requestId.
export class Agent {
  static async connect(base, token) {
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/api/v2/agent/ws`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const agent = new Agent(ws);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    return agent;
  }

  constructor(ws) {
    this.ws = ws;
    this.frames = [];
    this.waiters = [];
    this.seq = 0;
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data));
      this.frames.push(frame);
      for (const w of [...this.waiters]) {
        if (w.pred(frame)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          clearTimeout(w.timer);
          w.resolve(frame);
        }
      }
    });
  }

  // The first frame, received already (from index `since` on) or to come,
  // that `pred` accepts.
  waitFor(pred, timeoutMs = 15000, what = 'a frame', since = 0) {
    const found = this.frames.slice(since).find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`the agent did not get ${what} in ${timeoutMs} ms; it got ${JSON.stringify(this.frames).slice(-2000)}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  // Where the frames received so far end: for waitFor's `since`.
  mark() {
    return this.frames.length;
  }

  async request(frame) {
    this.seq += 1;
    const requestId = `r${this.seq}`;
    const answer = this.waitFor((f) => f.type === 'response' && f.requestId === requestId, 15000, `the answer to ${frame.type}`);
    this.ws.send(JSON.stringify({ ...frame, requestId }));
    const response = await answer;
    if (!response.ok) throw new Error(`${frame.type}: ${JSON.stringify(response.error)}`);
    return response.result;
  }

  send(frame) {
    this.ws.send(JSON.stringify(frame));
  }

  // Takes the next offer of a conversation not in `except` (from frame
  // `since` on): an `offer` frame, or a snapshot or `conversation` frame
  // showing the conversation as offered (which is what an agent client
  // acts on either way).
  async acceptNextOffer(except = [], since = 0) {
    const offered = (f) => (f.type === 'offer' ? [f.conversation] : heldIn(f).filter((c) => c.state === 'offered'));
    const frame = await this.waitFor(
      (f) => offered(f).some((c) => !except.includes(c.id)),
      20000,
      'an offer',
      since,
    );
    const conversation = offered(frame).find((c) => !except.includes(c.id));
    await this.request({ type: 'accept', conversationId: conversation.id });
    return { conversation };
  }

  // Every conversation offered so far.
  offeredIds() {
    const ids = new Set();
    for (const f of this.frames) {
      if (f.type === 'offer') ids.add(f.conversation.id);
      for (const c of heldIn(f)) ids.add(c.id);
    }
    return [...ids];
  }

  close() {
    this.ws.close();
  }
}

// The conversations an agent frame shows with their events: all of a
// snapshot's, the one of a `conversation` frame (a change after the
// snapshot), none of any other.
export function heldIn(f) {
  if (f.type === 'snapshot') return f.conversations;
  if (f.type === 'conversation') return [f.conversation];
  return [];
}

export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

// Screenshots go to docs/screenshots only when asked (they change with the
// clock shown in the chat); otherwise to a scratch directory.
export function screenshotPath(name) {
  const dir = process.env.SWITCHBOARD_SCREENSHOTS
    ? join(ROOT, 'docs/screenshots')
    : join(tmpdir(), 'switchboard-screenshots');
  mkdirSync(dir, { recursive: true });
  return join(dir, `${name}.png`);
}

// Signs a staff member in to the console at `base` through the IdP's
// login form (the test IdP signs in any login name, whose `sub` it is),
// and waits for the console to show.
export async function consoleSignIn(page, base, login) {
  await page.goto(`${base}/console`);
  await page.getByRole('link', { name: 'Sign in' }).click();
  await page.waitForURL(/\/interaction\//);
  await page.locator('input[name=login]').fill(login);
  await page.locator('input[name=password]').fill('any');
  await page.locator('button[type=submit]').click();
  await page.waitForURL(`${base}/console`);
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

// Names the IdP `integrationId` as the organization's staff sign-in.
export async function useForStaff(call, integrationId) {
  const org = await call('GET', '/api/v2/organizations/me');
  await call('PUT', '/api/v2/organizations/me', { name: org.name, staffIntegrationId: integrationId, version: org.version });
}
