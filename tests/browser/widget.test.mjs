// The web snippet in a real browser (Debian's chromium) against two real
// switchboard nodes on one Redis (the visitor's page on node A, the agent's
// socket on node B) and the real test IdP: a visitor on the demo page
// chats with an agent (typing, presence), keeps
// the history over a reload, loses the connection and finds nothing lost,
// and, on a deployment that requires it, cannot send before signing in
// through the popup at the IdP.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Agent, eventually, heldIn, launchBrowser, screenshotPath, setUp, startCluster, startIdp, widget, widgetSignIn } from './support.mjs';

let cluster;
let sb;
let idp;
let records;
let browser;
let agent;

before(async () => {
  cluster = await startCluster();
  sb = cluster.a;
  // The widget's popup lands on switchboard's callback page; a host page's
  // own auth provider (below) on a page of its own.
  idp = await startIdp([`${sb.base}/web-snippet/callback`, `${sb.base}/provider-landing`]);
  records = await setUp(sb, idp, { agentBase: cluster.b.base });
  agent = await Agent.connect(cluster.b.base, records.agent.token);
  await agent.request({ type: 'setPresence', status: 'available' });
  browser = await launchBrowser();
});

after(async () => {
  agent?.close();
  await browser?.close();
  await idp?.stop();
  await cluster?.stop();
});

async function say(page, text) {
  const w = widget(page);
  await w.input.fill(text);
  await w.input.press('Enter');
}

// The texts of the bubbles in the transcript, in order.
async function bubbles(page) {
  return widget(page).log.locator('li.msg').evaluateAll((items) =>
    items.map((li) => li.firstChild.textContent + li.childNodes[1].textContent),
  );
}

// The visitor's messages the agent has of a conversation (from snapshots,
// conversation updates and live events, merged by sequence as
// docs/agent-protocol.md advises).
function visitorTexts(conversationId) {
  const bySequence = new Map();
  for (const f of agent.frames) {
    const events = f.type === 'event' ? [f] : heldIn(f).filter((c) => c.id === conversationId).flatMap((c) => c.events);
    for (const e of events) {
      if (e.conversationId === conversationId && e.kind === 'message' && e.from.role === 'visitor') bySequence.set(e.sequence, e.text);
    }
  }
  return [...bySequence.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
}

describe('a guest on the demo page', () => {
  let context;
  let page;
  let conversationId;

  before(async () => {
    context = await browser.newContext({ viewport: { width: 1000, height: 720 } });
    // Keeps the widget's sockets reachable, so a test can cut one.
    await context.addInitScript(() => {
      const Native = window.WebSocket;
      window.__sockets = [];
      window.WebSocket = class extends Native {
        constructor(...args) {
          super(...args);
          window.__sockets.push(this);
        }
      };
    });
    page = await context.newPage();
  });

  after(async () => {
    await context?.close();
  });

  test('opens the widget, chats with an agent, sees typing and the agent joining', async () => {
    await page.goto(`${sb.base}/demo?deploymentId=${records.guest.id}`);
    const w = widget(page);
    await w.launcher.waitFor();
    await assert.doesNotReject(page.getByText('config.json answered').waitFor());
    // Styled from the configuration's primaryColor.
    const color = await w.launcher.evaluate((el) => getComputedStyle(el).backgroundColor);
    assert.equal(color, 'rgb(11, 110, 79)');
    await page.screenshot({ path: screenshotPath('launcher-closed') });

    // Keyboard: the launcher opens the panel and the message box gets the focus.
    await w.launcher.focus();
    await page.keyboard.press('Enter');
    await w.panel.waitFor();
    assert.equal(await w.launcher.getAttribute('aria-expanded'), 'true');
    await eventually(async () => assert.equal(await w.input.evaluate((el) => el.getRootNode().activeElement === el), true), 'focus on the message box');

    await say(page, 'Hello, my order has not arrived');
    const offer = await agent.acceptNextOffer();
    conversationId = offer.conversation.id;
    assert.equal(offer.conversation.visitor.authenticated, false);
    await w.log.getByText('Ada joined the conversation').waitFor();

    // The agent types, the visitor sees it; then the answer replaces it.
    agent.send({ type: 'typing', conversationId });
    await page.getByText('Ada is typing…').waitFor();
    await agent.request({ type: 'send', conversationId, text: 'Hi! Let me check that for you.', id: 'a-1' });
    await w.log.getByText('Hi! Let me check that for you.').waitFor();
    await page.getByText('Ada is typing…').waitFor({ state: 'hidden' });

    // The visitor types, the agent sees it.
    await w.input.pressSequentially('It was order 1234', { delay: 10 });
    await agent.waitFor((f) => f.type === 'typing' && f.conversationId === conversationId, 10000, 'the visitor typing');
    await w.input.press('Enter');
    await eventually(() => assert.deepEqual(visitorTexts(conversationId), ['Hello, my order has not arrived', 'It was order 1234']), 'the agent has both messages');

    // The transcript is an ARIA live log (quiet for the half second after
    // the first session, while history replays); the visitor's own
    // messages are marked.
    await eventually(async () => assert.equal(await w.log.getAttribute('aria-live'), 'polite'), 'a polite live log');
    await eventually(async () => assert.deepEqual(await bubbles(page), [
      'You: Hello, my order has not arrived',
      'Ada: Hi! Let me check that for you.',
      'You: It was order 1234',
    ]), 'the transcript');
    await page.screenshot({ path: screenshotPath('conversation-open') });

    // Escape closes the panel and the focus returns to the launcher.
    await w.input.press('Escape');
    await w.panel.waitFor({ state: 'hidden' });
    await eventually(async () => assert.equal(await w.launcher.evaluate((el) => el.getRootNode().activeElement === el), true), 'focus back on the launcher');
    await agent.request({ type: 'send', conversationId, text: 'Found it: it ships today.', id: 'a-2' });
    await page.getByRole('button', { name: 'Chat, 1 unread message' }).waitFor();
    await w.launcher.click();
    await w.log.getByText('Found it: it ships today.').waitFor();
  });

  test('a reload keeps the history, each message once', async () => {
    assert.ok(conversationId, 'the first test opened a conversation');
    const before = await bubbles(page);
    await page.reload();
    const w = widget(page);
    // The panel was open: it opens again, and the session is resumed.
    await w.panel.waitFor();
    await eventually(async () => assert.deepEqual(await bubbles(page), before), 'the history after the reload');
    await w.log.getByText('Ada joined the conversation').waitFor();
    // And the conversation goes on.
    await say(page, 'Thanks!');
    await eventually(() => assert.equal(visitorTexts(conversationId).at(-1), 'Thanks!'), 'the agent got the message');
    await eventually(async () => assert.equal((await bubbles(page)).filter((b) => b === 'You: Thanks!').length, 1), 'sent once');
  });

  test('a dropped connection resumes with nothing lost and nothing twice', async () => {
    const w = widget(page);
    const countOf = async (text) => (await bubbles(page)).filter((b) => b.endsWith(text)).length;

    // 1. The network goes away: the agent writes meanwhile, the visitor too.
    await context.setOffline(true);
    await page.getByText('Reconnecting…').waitFor();
    await agent.request({ type: 'send', conversationId, text: 'Are you still there?', id: 'a-3' });
    await agent.request({ type: 'send', conversationId, text: 'I will wait.', id: 'a-4' });
    await say(page, 'Written while offline');
    await context.setOffline(false);
    await w.log.getByText('I will wait.').waitFor();
    await eventually(() => assert.equal(visitorTexts(conversationId).filter((t) => t === 'Written while offline').length, 1), 'the offline message reached the agent once');
    await page.getByText('Reconnecting…').waitFor({ state: 'hidden' });

    // 2. The socket is cut under the widget (no offline event).
    const cut = await page.evaluate(() => {
      const open = window.__sockets.filter((s) => s.readyState === WebSocket.OPEN);
      open.forEach((s) => s.close());
      return open.length;
    });
    assert.equal(cut, 1);
    await agent.request({ type: 'send', conversationId, text: 'Sent while the socket was down.', id: 'a-5' });
    await w.log.getByText('Sent while the socket was down.').waitFor();

    // Everything exactly once, in order.
    for (const text of ['Are you still there?', 'I will wait.', 'Written while offline', 'Sent while the socket was down.']) {
      assert.equal(await countOf(text), 1, text);
    }
    const all = await bubbles(page);
    assert.ok(all.indexOf('Ada: Are you still there?') < all.indexOf('Ada: I will wait.'));
    // The widget did reconnect: a new socket was opened for each loss.
    assert.ok((await page.evaluate(() => window.__sockets.length)) >= 3);
  });

  test('a transfer and the end show, and the visitor can start again', async () => {
    const w = widget(page);
    // A transfer back to the queue: as with Genesys, the visitor is not told
    // the agent left (the Transport SDK knows no such presence); offered
    // again, the agent joins again.
    const since = agent.mark();
    await agent.request({ type: 'transfer', conversationId, queueId: records.queue.id });
    const again = await agent.acceptNextOffer([], since);
    assert.equal(again.conversation.id, conversationId);
    await eventually(async () => assert.equal(await w.log.getByText('Ada joined the conversation').count(), 2), 'joined again');
    assert.equal(await w.log.getByText('left the conversation').count(), 0);

    await agent.request({ type: 'end', conversationId, wrapUp: 'resolved' });
    await w.log.getByText('Ada ended the conversation').waitFor();
    // Read-only after the end (the default conversationDisconnect).
    const startNew = page.getByRole('button', { name: 'Start a new conversation' });
    await startNew.waitFor();
    assert.equal(await w.input.isDisabled(), true);
    await startNew.click();
    await eventually(async () => assert.equal(await w.input.isDisabled(), false), 'the message box is back');
    const known = agent.offeredIds();
    await say(page, 'One more question');
    const offer = await agent.acceptNextOffer(known);
    assert.notEqual(offer.conversation.id, conversationId);
    await w.log.getByText('New conversation').waitFor();
  });
});

describe('the demo page', () => {
  test('says so when the deployment cannot be read, and shows no widget', async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const response = await page.goto(`${sb.base}/demo?deploymentId=${crypto.randomUUID()}`);
      assert.equal(response.status(), 404);
      await page.getByRole('alert').filter({ hasText: 'No deployment has this id.' }).waitFor();
      await page.locator('#config-status').filter({ hasText: 'cannot be read (HTTP 404)' }).waitFor();
      assert.equal(await widget(page).launcher.count(), 0);
    } finally {
      await context.close();
    }
  });
});

describe('an idle guest', () => {
  test('is warned before the session expires, and can stay', async () => {
    const context = await browser.newContext();
    try {
      // The page's clock, so that half an hour passes at once.
      await context.clock.install();
      const page = await context.newPage();
      await page.goto(`${sb.base}/demo?deploymentId=${records.guest.id}`);
      const w = widget(page);
      // Opening the chat starts the session (no conversation yet: the agent
      // is not bothered).
      await w.launcher.waitFor();
      const connected = page.evaluate(() => new Promise((resolve) => window.Switchboard('on', 'connected', resolve)));
      await w.launcher.click();
      await connected;
      // sessionDurationSeconds is 1800 by default: the warning comes a minute before.
      await page.clock.fastForward('29:10');
      const warning = page.getByRole('alert').filter({ hasText: 'Your chat will end in about' });
      await warning.waitFor();
      await page.getByRole('button', { name: 'Stay connected' }).click();
      await warning.waitFor({ state: 'hidden' });
      await eventually(async () => assert.equal(await w.input.isDisabled(), false), 'still chatting');
    } finally {
      await context.close();
    }
  });
});

describe('a deployment that requires signing in', () => {
  let context;
  let page;

  before(async () => {
    context = await browser.newContext({ viewport: { width: 1000, height: 720 } });
    page = await context.newPage();
  });

  after(async () => {
    await context?.close();
  });

  test('a visitor who has not signed in cannot send, and sees why', async () => {
    await page.goto(`${sb.base}/demo?deploymentId=${records.signIn.id}`);
    const w = widget(page);
    await w.launcher.click();
    await w.panel.waitFor();
    await w.panel.getByText('Please sign in to chat with us').waitFor();
    assert.equal(await w.input.isDisabled(), true);
    assert.equal(await w.send.isDisabled(), true);
    // The reason is tied to the disabled box for assistive technology.
    assert.equal(await w.input.getAttribute('aria-describedby'), 'sb-gate-why');
    // The sign-in button has the focus.
    await eventually(async () => assert.equal(await w.signIn.evaluate((el) => el.getRootNode().activeElement === el), true), 'focus on Sign in');
    // Nothing reached switchboard's guest socket: no session, no conversation.
    assert.equal(await page.evaluate(() => localStorage.length), 0);
    await page.screenshot({ path: screenshotPath('sign-in-required') });
  });

  test('signs in through the popup at the IdP, chats, and signs out', async () => {
    const w = widget(page);
    await widgetSignIn(page, idp, 'grace');
    const known = agent.offeredIds();
    await say(page, 'Hello from a signed-in visitor');
    const offer = await agent.acceptNextOffer(known);
    // The agent sees who switchboard verified.
    assert.equal(offer.conversation.visitor.authenticated, true);
    assert.equal(offer.conversation.visitor.subject, 'grace');
    assert.equal(offer.conversation.visitor.email, 'grace@example.com');
    const conversationId = offer.conversation.id;
    await w.log.getByText('Ada joined the conversation').waitFor();
    await agent.request({ type: 'send', conversationId, text: 'Hello Grace!', id: 'g-1' });
    await w.log.getByText('Hello Grace!').waitFor();

    // The sign-in survives a reload: the history is there again.
    await page.reload();
    await w.panel.waitFor();
    await w.log.getByText('Hello Grace!').waitFor();
    await eventually(async () => assert.equal(await w.input.isDisabled(), false), 'still signed in');

    // Signing out revokes the session: the gate is back.
    await w.signOut.click();
    await w.panel.getByText('Please sign in to chat with us').waitFor();
    assert.equal(await w.input.isDisabled(), true);
    assert.equal(await page.evaluate(() => Object.keys(localStorage).filter((k) => k.endsWith(':auth')).length), 0);
  });
});

describe('signing in through the host page', () => {
  test("a registered auth provider's code is exchanged, and the session JWT is refreshed before it expires", async () => {
    const context = await browser.newContext();
    try {
      await context.clock.install();
      const page = await context.newPage();
      await page.goto(`${sb.base}/demo?deploymentId=${records.signIn.id}`);
      const config = await (await fetch(`${sb.base}/webdeployments/v1/deployments/${records.signIn.id}/config.json`)).json();
      // What a host page does with its own login: the authorization code
      // flow with PKCE in a popup of its own, landing on a page of its origin.
      await page.evaluate((oidc) => {
        window.Switchboard('registerAuthProvider', async () => {
          const b64 = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
          const random = () => b64(crypto.getRandomValues(new Uint8Array(32)));
          const verifier = random();
          const nonce = random();
          const state = random();
          const redirectUri = `${location.origin}/provider-landing`;
          const challenge = b64(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
          const url = new URL(oidc.authorizationEndpoint);
          url.search = new URLSearchParams({
            response_type: 'code', client_id: oidc.clientId, redirect_uri: redirectUri, scope: oidc.scopes.join(' '),
            state, nonce, code_challenge: challenge, code_challenge_method: 'S256',
          });
          window.__providerCalls = (window.__providerCalls || 0) + 1;
          const popup = window.open(url, 'host-login', 'popup,width=480,height=640');
          return new Promise((resolve, reject) => {
            const poll = setInterval(() => {
              if (popup.closed) {
                clearInterval(poll);
                resolve(null);
                return;
              }
              let href = '';
              try {
                href = popup.location.href;
              } catch {
                return; // at the IdP
              }
              if (!href.startsWith(redirectUri)) return;
              clearInterval(poll);
              popup.close();
              const params = new URL(href).searchParams;
              if (params.get('state') !== state) reject(new Error('state mismatch'));
              else resolve({ code: params.get('code'), redirectUri, codeVerifier: verifier, nonce, iss: params.get('iss') });
            }, 100);
          });
        });
      }, config.auth.oidc);

      // Opening the chat asks the provider (the click lets it open its popup).
      const w = widget(page);
      const [popup] = await Promise.all([page.waitForEvent('popup'), w.launcher.click()]);
      await popup.locator('input[name=login]').fill('hopper');
      await popup.locator('input[name=password]').fill('any');
      await popup.locator('button[type=submit]').click();
      await w.signOut.waitFor();
      assert.equal(await page.evaluate(() => window.__providerCalls), 1);

      const known = agent.offeredIds();
      await say(page, 'Signed in by my host page');
      const offer = await agent.acceptNextOffer(known);
      assert.equal(offer.conversation.visitor.subject, 'hopper');
      const conversationId = offer.conversation.id;
      await w.log.getByText('Ada joined the conversation').waitFor();

      // 14 of the JWT's 15 minutes later the widget refreshes it (the
      // refresh token rotates) and the chat goes on.
      const stored = () => page.evaluate(() => JSON.parse(localStorage.getItem(Object.keys(localStorage).find((k) => k.endsWith(':auth')))));
      const first = await stored();
      await page.clock.fastForward('14:10');
      await eventually(async () => assert.notEqual((await stored()).refreshToken, first.refreshToken), 'the refresh token rotated');
      assert.notEqual((await stored()).jwt, first.jwt);
      await say(page, 'Still here after the refresh');
      await eventually(() => assert.equal(visitorTexts(conversationId).at(-1), 'Still here after the refresh'), 'the agent got it');
      await agent.request({ type: 'send', conversationId, text: 'Welcome back, Hopper', id: 'h-1' });
      await w.log.getByText('Welcome back, Hopper').waitFor();
    } finally {
      await context.close();
    }
  });
});

// Needs the server's structured content (agent `send` with `content`, the
// guest's quick-reply answers): docs/agent-protocol.md, docs/guest-protocol.md.
describe('structured content from an agent', () => {
  let context;
  let page;
  let conversationId;
  const dialogs = [];

  // The message events the agent got for the conversation, by sequence.
  const messages = () => {
    const bySequence = new Map();
    for (const f of agent.frames) {
      const events = f.type === 'event' ? [f] : heldIn(f).filter((c) => c.id === conversationId).flatMap((c) => c.events);
      for (const e of events) if (e.conversationId === conversationId && e.kind === 'message') bySequence.set(e.sequence, e);
    }
    return [...bySequence.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
  };

  before(async () => {
    context = await browser.newContext({ viewport: { width: 1000, height: 760 } });
    page = await context.newPage();
    // Nothing the agent sends may run script in the page.
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      dialog.dismiss();
    });
    await page.goto(`${sb.base}/demo?deploymentId=${records.guest.id}`);
    await widget(page).launcher.click();
    const known = agent.offeredIds();
    await say(page, 'Show me some shoes');
    conversationId = (await agent.acceptNextOffer(known)).conversation.id;
  });

  after(async () => {
    await context?.close();
  });

  test('quick replies are buttons, spent once one is chosen, also after a reload', async () => {
    const w = widget(page);
    const { sequence } = await agent.request({
      type: 'send',
      conversationId,
      id: 'q-1',
      text: 'Road or trail?',
      content: [
        { contentType: 'QuickReply', quickReply: { text: 'Road', payload: 'road' } },
        { contentType: 'QuickReply', quickReply: { text: 'Trail', payload: 'trail', action: 'Message' } },
      ],
    });
    // The agent's own message comes back as an event (maybe after the answer).
    const question = await eventually(() => messages().find((m) => m.sequence === sequence) ?? assert.fail('not yet'), 'the agent’s own message');
    const replies = w.log.getByRole('group', { name: 'Quick replies' });
    await replies.getByRole('button', { name: 'Trail' }).click();
    await eventually(() => assert.ok(messages().some((m) => m.from.role === 'visitor' && m.content?.[0]?.buttonResponse?.payload === 'trail')), 'the agent got the answer');
    const answer = messages().at(-1);
    assert.deepEqual(answer.content, [
      { contentType: 'ButtonResponse', buttonResponse: { text: 'Trail', payload: 'trail', type: 'QuickReply', originatingMessageId: question.id } },
    ]);
    assert.equal(await replies.getByRole('button', { name: 'Road' }).isDisabled(), true);
    await eventually(async () => assert.equal((await bubbles(page)).at(-1), 'You: Trail'), 'the choice is the visitor’s message');

    await page.reload();
    await w.panel.waitFor();
    await w.log.getByText('Road or trail?').waitFor();
    await eventually(async () => {
      assert.equal(await replies.getByRole('button', { name: 'Road' }).isDisabled(), true);
      assert.equal(await replies.getByRole('button', { name: 'Trail' }).isDisabled(), true);
    }, 'still spent after the reload');
  });

  test('a carousel scrolls sideways; hostile content stays text; a card button answers', async () => {
    const w = widget(page);
    // URLs that are not http(s) never reach a visitor: the server refuses them.
    for (const card of [
      { title: 'Script image', description: '', image: 'javascript:alert(1)', actions: [] },
      { title: 'Script link', description: '', actions: [{ type: 'Link', text: 'Sneaky', url: 'javascript:alert(1)' }] },
      { title: 'Data image', description: '', image: 'data:image/png;base64,iVBORw0KGgo=', actions: [] },
    ]) {
      await assert.rejects(agent.request({ type: 'send', conversationId, content: [{ contentType: 'Card', card }] }), /invalid_content/);
    }
    await agent.request({
      type: 'send',
      conversationId,
      id: 'c-1',
      content: [
        {
          contentType: 'Carousel',
          carousel: {
            cards: [
              {
                title: 'Road runner',
                description: 'For tarmac',
                image: `${sb.base}/road.png`,
                defaultAction: { type: 'Link', text: 'Open', url: 'https://shop.example.com/road' },
                actions: [{ type: 'Postback', text: 'Pick road', payload: 'sku-road' }],
              },
              {
                title: '<img src=x onerror=alert(1)>',
                description: '<b>bold</b>',
                actions: [{ type: 'Postback', text: 'Pick trail', payload: 'sku-trail' }],
              },
              { title: 'Plain', description: 'no picture', actions: [] },
            ],
          },
        },
      ],
    });
    const carousel = w.log.getByRole('list', { name: '3 cards, scroll sideways' });
    await carousel.waitFor();
    assert.ok(await carousel.evaluate((el) => el.scrollWidth > el.clientWidth), 'wider than the panel: it scrolls');

    // The first card: its picture, its title a link, its button.
    const road = carousel.getByRole('group', { name: 'Road runner' });
    assert.equal(await road.locator('img').getAttribute('src'), `${sb.base}/road.png`);
    assert.equal(await road.getByRole('link', { name: 'Road runner (opens in a new tab)' }).getAttribute('href'), 'https://shop.example.com/road');

    // The hostile card: its markup is text.
    const hostile = carousel.getByRole('group', { name: '<img src=x onerror=alert(1)>' });
    await hostile.getByText('<b>bold</b>', { exact: true }).waitFor();
    assert.equal(await hostile.locator('img').count(), 0);
    assert.equal(await hostile.getByRole('link').count(), 0);
    assert.equal(await carousel.getByRole('group', { name: 'Plain' }).locator('img').count(), 0);
    assert.equal(await page.locator('[data-switchboard]').evaluate((host) => host.shadowRoot.querySelectorAll('b, [onerror]').length), 0);

    // Keyboard: the carousel is focusable, so arrows scroll it.
    await page.bringToFront();
    await carousel.focus();
    await page.keyboard.press('ArrowRight');
    await eventually(async () => assert.ok((await carousel.evaluate((el) => el.scrollLeft)) > 0), 'scrolled sideways');

    await hostile.getByRole('button', { name: 'Pick trail' }).click();
    await eventually(() => assert.equal(messages().at(-1).content?.[0]?.buttonResponse?.payload, 'sku-trail'), 'the agent got the answer');
    const answer = messages().at(-1);
    assert.equal(answer.from.role, 'visitor');
    assert.equal(answer.text, 'Pick trail');
    assert.deepEqual(answer.content, [{ contentType: 'ButtonResponse', buttonResponse: { text: 'Pick trail', payload: 'sku-trail', type: 'Button' } }]);
    await eventually(async () => assert.equal((await bubbles(page)).at(-1), 'You: Pick trail'), 'the choice is the visitor’s message');
    assert.deepEqual(dialogs, []);
  });
});
