// The agent console in a real browser, on two switchboard nodes sharing
// one Redis, with the real test IdP: staff sign in to the console on node
// B, a visitor signs in on node A's demo page, and the two chat (typing and
// presence on both sides) until the agent ends the conversation with a
// wrap-up code.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { consoleSignIn, eventually, launchBrowser, screenshotPath, setUp, startCluster, startIdp, useForStaff, widget, widgetSignIn } from './support.mjs';

let cluster;
let idp;
let records;
let browser;
let grace;

before(async () => {
  cluster = await startCluster();
  const { a, b } = cluster;
  // Visitors sign in through node A's widget callback, staff through node
  // B's console callback.
  idp = await startIdp([`${a.base}/web-snippet/callback`, `${b.base}/auth/callback`]);
  records = await setUp(a, idp);
  const { call } = records;
  await useForStaff(call, records.integration.id);
  // Grace answers the queue; an admin lets her in before her first sign-in
  // (the IdP's subject is the login name).
  grace = await call('POST', '/api/v2/members', {
    issuer: idp.issuer,
    subject: 'grace',
    displayName: 'Grace',
    email: 'grace@example.com',
    roles: ['agent'],
  });
  const queue = records.queue;
  await call('PUT', `/api/v2/routing/queues/${queue.id}`, {
    name: queue.name,
    offerTimeoutSeconds: queue.offerTimeoutSeconds,
    agentCapacity: queue.agentCapacity,
    memberIds: [grace.id],
    version: queue.version,
  });
  // A queue to transfer to, which nobody answers.
  await call('POST', '/api/v2/routing/queues', { name: 'Billing' });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await idp?.stop();
  await cluster?.stop();
});

// A guest on node A's demo page of the guest deployment opens the widget
// and writes `text`: the widget's parts.
async function guestSays(context, text) {
  const page = await context.newPage();
  await page.goto(`${cluster.a.base}/demo?deploymentId=${records.guest.id}`);
  const w = widget(page);
  await w.launcher.click();
  await w.input.fill(text);
  await w.input.press('Enter');
  return w;
}

describe('an agent in the console and a signed-in visitor, on different nodes', () => {
  let agentContext;
  let agentPage;
  let visitorContext;
  let visitorPage;
  let card;

  before(async () => {
    agentContext = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    agentPage = await agentContext.newPage();
    visitorContext = await browser.newContext({ viewport: { width: 1000, height: 720 } });
    visitorPage = await visitorContext.newPage();
  });

  after(async () => {
    await agentContext?.close();
    await visitorContext?.close();
  });

  test('the agent signs in on node B, sees its member id, and goes available', async () => {
    await agentPage.goto(`${cluster.b.base}/console`);
    await agentPage.getByText('Sign in with your organization’s account').waitFor();
    await consoleSignIn(agentPage, cluster.b.base, 'grace');

    await agentPage.getByRole('link', { name: 'Profile' }).click();
    await agentPage.getByTestId('member-id').getByText(grace.id).waitFor();
    // An agent has no settings pages.
    assert.equal(await agentPage.getByRole('link', { name: 'Settings' }).count(), 0);

    await agentPage.getByRole('link', { name: 'Conversations' }).click();
    await agentPage.getByText('Connected', { exact: true }).waitFor();
    const available = agentPage.getByRole('button', { name: 'Available' });
    await available.click();
    await eventually(async () => assert.equal(await available.getAttribute('aria-pressed'), 'true'), 'available');
    await agentPage.getByText('Available on 1 queue').waitFor();
  });

  test('a visitor on node A signs in at the IdP and is offered to the agent', async () => {
    await visitorPage.goto(`${cluster.a.base}/demo?deploymentId=${records.signIn.id}`);
    const w = widget(visitorPage);
    await w.launcher.click();
    await w.panel.getByText('Please sign in to chat with us').waitFor();
    await widgetSignIn(visitorPage, idp, 'ada');
    await w.input.fill('Hello, I cannot log in to my account');
    await w.input.press('Enter');

    // The offer: a visual cue (the count in the tab title and the nav) and
    // the verified identity before accepting.
    const offers = agentPage.getByRole('list', { name: 'Offers' });
    const offer = offers.getByRole('listitem').filter({ hasText: 'Ada Tester' });
    await offer.waitFor();
    await offer.getByText('Authenticated').waitFor();
    await eventually(async () => assert.equal(await agentPage.title(), '(1) switchboard console'), 'the title counts the offer');
    await agentPage.screenshot({ path: screenshotPath('console-offer') });
    await offer.getByRole('button', { name: 'Accept Ada Tester' }).click();
    await offers.waitFor({ state: 'hidden' });
    assert.equal(await agentPage.title(), 'switchboard console');

    card = agentPage.getByRole('article', { name: 'Ada Tester' });
    await card.waitFor();
    const identity = card.getByRole('definition');
    await identity.getByText('ada@example.com', { exact: true }).waitFor();
    await identity.getByText(idp.issuer, { exact: true }).waitFor();
    await identity.getByText('ada', { exact: true }).waitFor();
    await card.getByRole('log').getByText('Hello, I cannot log in to my account').waitFor();
    // The visitor sees the agent join.
    await w.log.getByText('Grace joined the conversation').waitFor();
  });

  test('typing and messages show on both sides', async () => {
    const w = widget(visitorPage);
    const reply = card.getByRole('textbox', { name: 'Reply to Ada Tester' });

    // The agent types: the visitor sees it.
    await reply.pressSequentially('Let me', { delay: 20 });
    await visitorPage.getByText('Grace is typing…').waitFor();
    await reply.pressSequentially(' check that for you.', { delay: 5 });
    await reply.press('Enter');
    await w.log.getByText('Let me check that for you.').waitFor();

    // The visitor types: the agent sees it, then the message.
    await w.input.pressSequentially('It says my password', { delay: 20 });
    await card.getByText('Ada Tester is typing…').waitFor();
    await w.input.pressSequentially(' is wrong', { delay: 5 });
    await w.input.press('Enter');
    const transcript = card.getByRole('log', { name: 'Conversation with Ada Tester' });
    await transcript.getByText('It says my password is wrong').waitFor();
    await card.getByText('Ada Tester is typing…').waitFor({ state: 'hidden' });
    // Each message once, in order, the agent's own marked as such.
    await eventually(async () => {
      const texts = await transcript.locator('li.msg .text').allTextContents();
      assert.deepEqual(texts, ['Hello, I cannot log in to my account', 'Let me check that for you.', 'It says my password is wrong']);
    }, 'the agent transcript');
    await transcript.locator('li.msg.mine').getByText('Let me check that for you.').waitFor();
  });

  test('a second conversation opens beside the first, and is transferred to another queue', async () => {
    const guestContext = await browser.newContext({ viewport: { width: 1000, height: 720 } });
    try {
      const w = await guestSays(guestContext, 'Do you ship to Norway?');

      const offer = agentPage.getByRole('list', { name: 'Offers' }).getByRole('listitem').filter({ hasText: 'Visitor' });
      await offer.getByText('Guest').waitFor();
      await offer.getByRole('button', { name: 'Accept Visitor' }).click();
      const second = agentPage.getByRole('article', { name: 'Visitor' });
      await second.getByText('Not signed in').waitFor();
      await second.getByRole('log').getByText('Do you ship to Norway?').waitFor();
      // Side by side: both cards on one row.
      const [left, right] = [await card.boundingBox(), await second.boundingBox()];
      assert.equal(left.y, right.y);
      assert.ok(right.x > left.x + left.width);
      await agentPage.screenshot({ path: screenshotPath('console-conversations') });

      // Transfer: the targets come from the agent's directory.
      const target = second.getByRole('combobox', { name: 'Transfer Visitor to' });
      await target.selectOption({ label: 'Billing' });
      await second.getByRole('button', { name: 'Transfer' }).click();
      await second.getByText('No longer yours').waitFor();
      assert.equal(await second.getByRole('textbox', { name: 'Reply to Visitor' }).count(), 0);
      await second.getByRole('log').getByText('You transferred the conversation to Billing').waitFor();
      await second.getByRole('button', { name: 'Close' }).click();
      await second.waitFor({ state: 'detached' });
    } finally {
      await guestContext.close();
    }
  });

  test('a declined offer goes away', async () => {
    const guestContext = await browser.newContext();
    try {
      const w = await guestSays(guestContext, 'Anyone there?');
      const offers = agentPage.getByRole('list', { name: 'Offers' });
      await offers.getByRole('button', { name: 'Decline Visitor' }).click();
      await offers.waitFor({ state: 'hidden' });
      assert.equal(await agentPage.title(), 'switchboard console');
      assert.equal(await agentPage.getByRole('article', { name: 'Visitor' }).count(), 0);
      // The visitor still waits, with nobody joined.
      assert.equal(await w.log.getByText('joined the conversation').count(), 0);
    } finally {
      await guestContext.close();
    }
  });

  test('a reload of the console keeps the conversation and its history', async () => {
    await agentPage.reload();
    card = agentPage.getByRole('article', { name: 'Ada Tester' });
    const transcript = card.getByRole('log', { name: 'Conversation with Ada Tester' });
    await eventually(async () => {
      const texts = await transcript.locator('li.msg .text').allTextContents();
      assert.deepEqual(texts, ['Hello, I cannot log in to my account', 'Let me check that for you.', 'It says my password is wrong']);
    }, 'the history after a reload');
    // Still available: the status is the server's, not the page's.
    await eventually(async () => assert.equal(await agentPage.getByRole('button', { name: 'Available' }).getAttribute('aria-pressed'), 'true'), 'still available');
  });

  test('the agent ends the conversation with a wrap-up code', async () => {
    const w = widget(visitorPage);
    await card.getByRole('combobox', { name: 'Wrap-up code' }).fill('password-reset');
    await card.getByRole('button', { name: 'End', exact: true }).click();
    await card.getByText('Ended · password-reset').waitFor();
    await card.getByRole('log').getByText('Conversation ended (password-reset)').waitFor();
    // Read-only now, until the agent closes it.
    assert.equal(await card.getByRole('textbox', { name: 'Reply to Ada Tester' }).count(), 0);
    await w.log.getByText('Grace ended the conversation').waitFor();
    await card.getByRole('button', { name: 'Close' }).click();
    await card.waitFor({ state: 'detached' });
  });
});

// Needs the server's structured content (agent `send` with `content`, the
// guest's quick-reply answers): docs/agent-protocol.md, docs/guest-protocol.md.
describe('quick replies and a card from the console, answered in the widget', () => {
  let agentContext;
  let agentPage;
  let visitorContext;
  let visitorPage;
  let card;
  let w;
  // The guest socket's frames, as JSON: what the widget sent and received.
  const sent = [];
  const received = [];
  const onMessages = () => sent.filter((f) => f.action === 'onMessage' && f.message?.type !== 'Event');

  before(async () => {
    agentContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    agentPage = await agentContext.newPage();
    visitorContext = await browser.newContext({ viewport: { width: 1000, height: 760 } });
    visitorPage = await visitorContext.newPage();
    visitorPage.on('websocket', (socket) => {
      socket.on('framesent', ({ payload }) => sent.push(JSON.parse(payload)));
      socket.on('framereceived', ({ payload }) => received.push(JSON.parse(payload)));
    });

    await consoleSignIn(agentPage, cluster.b.base, 'grace');
    const available = agentPage.getByRole('button', { name: 'Available' });
    await available.click();
    await eventually(async () => assert.equal(await available.getAttribute('aria-pressed'), 'true'), 'available');

    await visitorPage.goto(`${cluster.a.base}/demo?deploymentId=${records.guest.id}`);
    w = widget(visitorPage);
    await w.launcher.click();
    await w.input.fill('I need new running shoes');
    await w.input.press('Enter');
    const offers = agentPage.getByRole('list', { name: 'Offers' });
    await offers.getByRole('button', { name: 'Accept Visitor' }).click();
    card = agentPage.getByRole('article', { name: 'Visitor' });
    await card.getByRole('log').getByText('I need new running shoes').waitFor();
  });

  after(async () => {
    await agentContext?.close();
    await visitorContext?.close();
  });

  test('the agent sends quick replies; the visitor taps one; the agent sees the choice', async () => {
    await card.getByText('Quick replies and cards').click();
    await card.getByRole('textbox', { name: 'Quick reply message' }).fill('Which size?');
    await card.getByRole('textbox', { name: 'Quick reply options' }).fill('41\n42\n43');
    await card.getByRole('button', { name: 'Send quick replies' }).click();

    const replies = w.log.getByRole('group', { name: 'Quick replies' });
    await w.log.getByText('Which size?').waitFor();
    assert.deepEqual(await replies.getByRole('button').allTextContents(), ['41', '42', '43']);
    await replies.getByRole('button', { name: '42' }).click();
    // Spent once chosen; the choice is the visitor's message.
    await eventually(async () => {
      for (const size of ['41', '42', '43']) assert.equal(await replies.getByRole('button', { name: size }).isDisabled(), true, size);
    }, 'the quick replies are spent');
    await w.log.locator('li.msg.in').filter({ hasText: '42' }).waitFor();

    // The answer on the wire is the Transport SDK's, naming the agent's message.
    const question = received.find((f) => f.class === 'StructuredMessage' && f.body?.content?.some((c) => c.contentType === 'QuickReply'));
    assert.ok(question, 'the quick replies reached the widget');
    assert.equal(question.body.type, 'Structured');
    assert.equal(question.body.text, 'Which size?');
    const answer = onMessages().at(-1).message;
    assert.ok(answer.id, 'sent with a client message id');
    delete answer.id;
    assert.deepEqual(answer, {
      type: 'Text',
      text: '',
      content: [{ contentType: 'ButtonResponse', buttonResponse: { text: '42', payload: '42', type: 'QuickReply', originatingMessageId: question.body.id } }],
    });

    // The agent: its own quick replies, then the visitor's choice, badged.
    const transcript = card.getByRole('log', { name: 'Conversation with Visitor' });
    const mine = transcript.locator('li.msg.mine').filter({ hasText: 'Which size?' });
    await eventually(async () => {
      assert.deepEqual(await mine.getByRole('list', { name: 'Quick replies' }).getByRole('listitem').allTextContents(), ['41', '42', '43']);
      // Sent: no longer pending.
      assert.equal(await mine.and(transcript.locator('.pending')).count(), 0);
    }, 'the agent’s quick replies in its transcript');
    const chose = transcript.locator('li.msg.visitor').filter({ has: agentPage.getByText('chose', { exact: true }) });
    await chose.waitFor();
    assert.equal(await chose.locator('.text').textContent(), '42');
  });

  test('the agent sends a card; the visitor taps its button; links only open', async () => {
    await card.getByRole('textbox', { name: 'Card title' }).fill('Trail runner');
    await card.getByRole('textbox', { name: 'Card description' }).fill('Light, with a grippy sole');
    await card.getByRole('textbox', { name: 'Card image URL' }).fill(`${cluster.a.base}/shoe.png`);
    await card.getByRole('textbox', { name: 'Card buttons' }).fill('Buy now\nDetails | https://shop.example.com/trail');
    await card.getByRole('button', { name: 'Send card' }).click();

    const shown = w.log.getByRole('group', { name: 'Trail runner' });
    await shown.getByText('Light, with a grippy sole').waitFor();
    assert.equal(await shown.locator('img').getAttribute('src'), `${cluster.a.base}/shoe.png`);
    const details = shown.getByRole('link', { name: 'Details (opens in a new tab)' });
    assert.equal(await details.getAttribute('href'), 'https://shop.example.com/trail');
    assert.equal(await details.getAttribute('target'), '_blank');
    assert.equal(await details.getAttribute('rel'), 'noopener');

    const before = onMessages().length;
    await shown.getByRole('button', { name: 'Buy now' }).click();
    await w.log.locator('li.msg.in').filter({ hasText: 'Buy now' }).waitFor();
    await eventually(() => assert.equal(onMessages().length, before + 1), 'one answer sent');
    const answer = onMessages().at(-1).message;
    delete answer.id;
    assert.deepEqual(answer, {
      type: 'Structured',
      text: 'Buy now',
      content: [{ contentType: 'ButtonResponse', buttonResponse: { text: 'Buy now', payload: 'Buy now', type: 'Button' } }],
    });

    const transcript = card.getByRole('log', { name: 'Conversation with Visitor' });
    const mine = transcript.locator('li.msg.mine').filter({ hasText: 'Trail runner' });
    await mine.getByText('Light, with a grippy sole').waitFor();
    assert.deepEqual(await mine.getByRole('list', { name: 'Buttons' }).getByRole('listitem').allTextContents(), [
      'Buy now',
      'Details → https://shop.example.com/trail',
    ]);
    await eventually(async () => {
      const choices = await transcript.locator('li.msg.visitor').filter({ has: agentPage.getByText('chose', { exact: true }) }).locator('.text').allTextContents();
      assert.deepEqual(choices, ['42', 'Buy now']);
    }, 'the agent sees both choices');
    // Nothing is sent for a link.
    const count = onMessages().length;
    const [tab] = await Promise.all([visitorContext.waitForEvent('page'), details.click()]);
    await tab.close();
    assert.equal(onMessages().length, count);
  });

  test('the composer checks what it sends', async () => {
    await card.getByRole('textbox', { name: 'Card title' }).fill('Sandals');
    await card.getByRole('textbox', { name: 'Card image URL' }).fill('javascript:alert(1)');
    await card.getByRole('button', { name: 'Send card' }).click();
    await card.getByRole('alert').filter({ hasText: 'The image URL must start with https:// or http://.' }).waitFor();
    assert.equal(await card.getByRole('textbox', { name: 'Card image URL' }).getAttribute('aria-invalid'), 'true');
    await card.getByRole('button', { name: 'Send quick replies' }).click();
    await card.getByRole('alert').filter({ hasText: 'Write at least one option' }).waitFor();
    assert.equal(await w.log.getByText('Sandals').count(), 0);
  });
});

describe('an admin in the settings pages', () => {
  let context;
  let page;

  before(async () => {
    await records.call('POST', '/api/v2/members', {
      issuer: idp.issuer,
      subject: 'root',
      displayName: 'Root',
      roles: ['admin'],
    });
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: cluster.b.base });
    page = await context.newPage();
    // Moving a deployment to a version that changes who may chat asks
    // first; the admin agrees.
    page.on('dialog', (dialog) => dialog.accept());
  });

  after(async () => {
    await context?.close();
  });

  test('tests an OIDC integration against its IdP', async () => {
    await consoleSignIn(page, cluster.b.base, 'root');
    await page.getByRole('link', { name: 'Settings' }).click();
    const sections = page.getByRole('navigation', { name: 'Settings sections' });
    await sections.getByRole('link', { name: 'OIDC integrations' }).click();
    const row = page.getByRole('row').filter({ hasText: 'Test IdP' });
    await row.getByText(idp.issuer).waitFor();
    await page.getByRole('button', { name: 'Test Test IdP' }).click();
    await page.getByText('Test of “Test IdP”: every check passed').waitFor();
    const diagnosis = page.locator('.st-diagnosis');
    assert.equal(await diagnosis.getByText('Fail', { exact: true }).count(), 0);
    assert.ok((await diagnosis.getByText('Pass', { exact: true }).count()) >= 3);
    // The client secret is never shown, only that one is set.
    assert.equal(await page.getByText(idp.clientSecret).count(), 0);
  });

  test('admits a native app: app hosts and redirect schemes on a deployment, no rotation on its integration', async () => {
    const sections = page.getByRole('navigation', { name: 'Settings sections' });
    await sections.getByRole('link', { name: 'Deployments' }).click();
    await page.getByRole('button', { name: 'Edit Sign-in demo' }).click();
    const hosts = page.getByRole('textbox', { name: 'App host names' });
    const schemes = page.getByRole('textbox', { name: 'App redirect schemes' });
    await hosts.fill('webmessaging.chat.example.com\nChat.Example.com');
    // A redirect URI rather than its scheme is refused before anything is sent.
    await schemes.fill('com.example.app:/callback');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('alert').filter({ hasText: 'is not a reverse-DNS scheme like com.example.app' }).waitFor();
    assert.equal(await schemes.getAttribute('aria-invalid'), 'true');
    await schemes.fill('com.example.app');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Deployment “Sign-in demo” saved.').waitFor();

    await sections.getByRole('link', { name: 'OIDC integrations' }).click();
    await page.getByRole('button', { name: 'Edit Test IdP' }).click();
    const rotation = page.getByRole('checkbox', { name: 'Rotate refresh tokens' });
    assert.equal(await rotation.isChecked(), true);
    await rotation.uncheck();
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Integration “Test IdP” saved.').waitFor();

    await sections.getByRole('link', { name: 'Messenger configurations' }).click();
    await page.getByRole('button', { name: 'Edit Signed in' }).click();
    await page.getByLabel('Launcher button').selectOption('OnDemand');
    const push = page.getByRole('checkbox', { name: 'Push notifications' });
    const pushContent = page.getByLabel('Notification content');
    assert.equal(await pushContent.isDisabled(), true);
    await push.check();
    await pushContent.selectOption('IncludeMessagesContent');
    await page.getByRole('button', { name: 'Save', exact: true }).click();
    await page.getByText('Draft of “Signed in” saved.', { exact: false }).waitFor();

    // After a reload the forms show what was stored (host names lowercased
    // and sorted by the server).
    await page.reload();
    await page.getByRole('button', { name: 'Edit Signed in' }).click();
    assert.equal(await page.getByLabel('Launcher button').inputValue(), 'OnDemand');
    assert.equal(await page.getByRole('checkbox', { name: 'Push notifications' }).isChecked(), true);
    assert.equal(await page.getByLabel('Notification content').inputValue(), 'IncludeMessagesContent');
    await sections.getByRole('link', { name: 'Deployments' }).click();
    await page.getByRole('button', { name: 'Edit Sign-in demo' }).click();
    assert.equal(await hosts.inputValue(), 'chat.example.com\nwebmessaging.chat.example.com');
    assert.equal(await schemes.inputValue(), 'com.example.app');
    await sections.getByRole('link', { name: 'OIDC integrations' }).click();
    await page.getByRole('button', { name: 'Edit Test IdP' }).click();
    assert.equal(await rotation.isChecked(), false);

    // And the API has them.
    const deployment = await records.call('GET', `/api/v2/webdeployments/deployments/${records.signIn.id}`);
    assert.deepEqual(deployment.allowedAppHosts, ['chat.example.com', 'webmessaging.chat.example.com']);
    assert.deepEqual(deployment.allowedAppRedirectSchemes, ['com.example.app']);
    assert.deepEqual(deployment.allowedDomains, [cluster.a.base]);
    const integration = await records.call('GET', `/api/v2/integrations/oidc/${records.integration.id}`);
    assert.equal(integration.refreshTokenRotation, false);
    assert.equal(integration.clientSecretSet, true);
    const draft = await records.call('GET', `/api/v2/webdeployments/configurations/${records.signInConfig}/versions/draft`);
    assert.deepEqual(draft.messenger.launcherButton, { visibility: 'OnDemand' });
    assert.deepEqual(draft.messenger.apps.conversations.notifications, { enabled: true, notificationContentType: 'IncludeMessagesContent' });
    // What the form does not show is kept.
    assert.equal(draft.messenger.styles.primaryColor, '#0b6e4f');
    assert.equal(draft.authenticationSettings.enabled, true);
  });

  test('requires sign-in for a deployment, publishes, and the next visitor must sign in', async () => {
    const configUrl = `${cluster.a.base}/webdeployments/v1/deployments/${records.guest.id}/config.json`;
    assert.equal((await (await fetch(configUrl)).json()).auth?.enabled ?? false, false);

    await page.getByRole('link', { name: 'Settings' }).click();
    const sections = page.getByRole('navigation', { name: 'Settings sections' });
    await sections.getByRole('link', { name: 'Messenger configurations' }).click();
    await page.getByRole('button', { name: 'Edit Guests' }).click();
    await page.getByRole('checkbox', { name: 'Authentication required' }).check();
    await page.getByLabel('Sign-in integration').selectOption({ label: `Test IdP (${idp.issuer})` });
    await page.getByRole('button', { name: 'Publish' }).click();
    await page.getByText('Published version 2 of “Guests”.').waitFor();

    await sections.getByRole('link', { name: 'Deployments' }).click();
    const row = page.getByRole('row').filter({ hasText: 'Guest demo' });
    await row.getByText('Guests', { exact: true }).waitFor();
    await page.getByRole('button', { name: 'Use version 2 for Guest demo' }).click();
    await row.getByText('Sign-in required').waitFor();
    await page.screenshot({ path: screenshotPath('console-settings') });
    // What a widget reads now.
    const config = await (await fetch(configUrl)).json();
    assert.equal(config.version, '2');
    assert.equal(config.auth.enabled, true);

    // The snippet, copied as a site would paste it (each node writes its
    // own public URL into it).
    await page.getByRole('button', { name: 'Edit Guest demo' }).click();
    await page.getByRole('button', { name: 'Copy snippet' }).click();
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    assert.equal(copied, records.guest.snippet.replaceAll(cluster.a.base, cluster.b.base));
    assert.match(copied, /deploymentId: '[0-9a-f-]{36}'/);
    await page.screenshot({ path: screenshotPath('console-deployment') });

    // The next visitor of that deployment cannot send before signing in.
    const visitorContext = await browser.newContext({ viewport: { width: 1000, height: 720 } });
    try {
      const visitor = await visitorContext.newPage();
      await visitor.goto(`${cluster.a.base}/demo?deploymentId=${records.guest.id}`);
      const w = widget(visitor);
      await w.launcher.click();
      await w.panel.getByText('Please sign in to chat with us').waitFor();
      assert.equal(await w.input.isDisabled(), true);
      await w.signIn.waitFor();
    } finally {
      await visitorContext.close();
    }
  });

  test('sets a queue’s decline cool-down and wait limit, and lifts the limit again', async () => {
    const billing = async () => (await records.call('GET', '/api/v2/routing/queues?pageSize=100')).entities.find((q) => q.name === 'Billing');
    await page.getByRole('link', { name: 'Settings' }).click();
    const sections = page.getByRole('navigation', { name: 'Settings sections' });
    await sections.getByRole('link', { name: 'Queues' }).click();
    await page.getByRole('button', { name: 'Edit Billing' }).click();
    await page.getByLabel('Decline cool-down (seconds)').fill('30');
    await page.getByLabel('Wait limit (seconds)').fill('600');
    await page.getByRole('button', { name: 'Save' }).click();
    await eventually(async () => {
      const queue = await billing();
      assert.equal(queue.declineCooldownSeconds, 30);
      assert.equal(queue.maxWaitSeconds, 600);
    }, 'the queue settings saved');

    // An empty wait limit is no limit; the cool-down stays as it was.
    await page.getByRole('button', { name: 'Edit Billing' }).click();
    assert.equal(await page.getByLabel('Wait limit (seconds)').inputValue(), '600');
    await page.getByLabel('Wait limit (seconds)').fill('');
    await page.getByRole('button', { name: 'Save' }).click();
    await eventually(async () => {
      const queue = await billing();
      assert.equal(queue.maxWaitSeconds ?? null, null);
      assert.equal(queue.declineCooldownSeconds, 30);
    }, 'the wait limit lifted');
  });

  test('grants a role in Members and roles; the supervisor then reads queues, read-only', async () => {
    const sections = page.getByRole('navigation', { name: 'Settings sections' });
    await sections.getByRole('link', { name: 'Members and roles' }).click();
    await page.getByRole('button', { name: 'Edit Grace' }).click();
    await page.getByRole('checkbox', { name: 'Supervisor' }).check();
    await page.getByRole('button', { name: 'Save' }).click();
    await eventually(async () => {
      const member = await records.call('GET', `/api/v2/members/${grace.id}`);
      assert.deepEqual(member.roles, ['supervisor', 'agent']);
    }, 'the role granted');

    // Grace, signed in as a supervisor now, sees Settings: queues and
    // members, without anything to change them.
    const supervisorContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const supervisor = await supervisorContext.newPage();
      await consoleSignIn(supervisor, cluster.b.base, 'grace');
      await supervisor.getByRole('link', { name: 'Settings' }).click();
      const nav = supervisor.getByRole('navigation', { name: 'Settings sections' });
      await nav.getByRole('link', { name: 'Queues' }).waitFor();
      assert.deepEqual(await nav.getByRole('link').allTextContents(), ['Queues', 'Members and roles']);
      await supervisor.getByRole('row').filter({ hasText: 'Support' }).waitFor();
      assert.equal(await supervisor.getByRole('button', { name: 'New queue' }).count(), 0);
      assert.equal(await supervisor.getByRole('button', { name: /^(Edit|Delete) / }).count(), 0);
    } finally {
      await supervisorContext.close();
    }
  });

  test('reads the audit log: who changed a role and who signed in; sets the retention', async () => {
    const sections = page.getByRole('navigation', { name: 'Settings sections' });
    await sections.getByRole('link', { name: 'Audit log' }).click();
    const table = page.getByRole('table', { name: 'Audit log' });
    // The role granted above, newest first, with what changed.
    const granted = table.getByRole('row').filter({ hasText: grace.id }).filter({ hasText: 'Changed' }).first();
    await granted.waitFor();
    await granted.getByText('"supervisor"').first().waitFor();
    await granted.getByText('Member', { exact: false }).first().waitFor();
    assert.ok((await table.getByRole('row').filter({ hasText: 'Signed in' }).count()) >= 1);
    // Narrowed to Grace's record: only entries about her.
    await page.getByLabel('Record id').fill(grace.id);
    await page.getByRole('button', { name: 'Filter' }).click();
    await eventually(async () => {
      const rows = await table.getByRole('row').allTextContents();
      // The header, then entries that all name her.
      assert.ok(rows.length >= 2, rows.join('\n'));
      for (const text of rows.slice(1)) assert.ok(text.includes(grace.id), text);
    }, 'the log filtered by record');
    // Secrets never show, not even the integration's.
    assert.equal(await page.getByText(idp.clientSecret).count(), 0);

    // The organization keeps its data 30 days.
    await sections.getByRole('link', { name: 'Organization' }).click();
    await page.getByLabel('Retention (days)').fill('30');
    await page.getByRole('button', { name: 'Save' }).click();
    await eventually(async () => {
      const org = await records.call('GET', '/api/v2/organizations/me');
      assert.equal(org.retentionDays, 30);
    }, 'the retention saved');
  });

  test('signs out: the session is over on every node', async () => {
    // The cookie as it was: after signing out it must be worth nothing,
    // on either node, even to someone who kept a copy.
    const session = (await context.cookies(cluster.b.base)).find((c) => c.name === 'sb_session');
    const cookie = `sb_session=${session.value}`;
    for (const node of [cluster.a, cluster.b]) {
      const r = await fetch(`${node.base}/auth/session`, { headers: { cookie } });
      assert.equal(r.status, 200, node.base);
    }
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByText('You have signed out.').waitFor();
    for (const node of [cluster.a, cluster.b]) {
      const r = await fetch(`${node.base}/auth/session`, { headers: { cookie } });
      assert.equal(r.status, 401, node.base);
    }
    // Back to the console: the sign-in page, not the settings.
    await page.goto(`${cluster.b.base}/console#/settings/deployments`);
    await page.getByRole('link', { name: 'Sign in' }).waitFor();
  });
});
