// Attachments in real browsers: a visitor attaches an image in the widget
// (with the file picker), the agent sees its preview in the console and
// sends a file back, and both download what the other sent, byte for byte.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { consoleSignIn, eventually, launchBrowser, screenshotPath, setUp, startIdp, startSwitchboard, useForStaff, widget } from './support.mjs';

// A 1×1 PNG, so that the preview really decodes.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
);
const INVOICE = Buffer.from('Invoice 42\nTotal: 12.00 EUR\n');

let sb;
let idp;
let browser;
let deployment;

before(async () => {
  sb = await startSwitchboard();
  idp = await startIdp([`${sb.base}/web-snippet/callback`, `${sb.base}/auth/callback`]);
  const records = await setUp(sb, idp);
  const { call } = records;
  await useForStaff(call, records.integration.id);
  const grace = await call('POST', '/api/v2/members', {
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
  // A deployment that takes images and text files.
  const configuration = await call('POST', '/api/v2/webdeployments/configurations', {
    name: 'Files',
    messenger: {
      styles: { primaryColor: '#0b6e4f' },
      fileUpload: { enableAttachments: true, modes: [{ fileTypes: ['image/png', 'image/jpeg', 'text/plain'], maxFileSizeKB: 1024 }] },
    },
  });
  await call('POST', `/api/v2/webdeployments/configurations/${configuration.id}/versions/draft/publish`, {});
  deployment = await call('POST', '/api/v2/webdeployments/deployments', {
    name: 'Files demo',
    configuration: { id: configuration.id, version: '1' },
    allowedDomains: [sb.base],
    status: 'Active',
    queueId: queue.id,
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await idp?.stop();
  await sb?.stop();
});

// The bytes behind a link or image, fetched in the page (as a click would
// download them), as a Buffer.
async function bytesAt(page, url) {
  const base64 = await page.evaluate(async (href) => {
    const r = await fetch(href);
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const bytes = new Uint8Array(await r.arrayBuffer());
    let text = '';
    for (const b of bytes) text += String.fromCharCode(b);
    return btoa(text);
  }, url);
  return Buffer.from(base64, 'base64');
}

describe('a visitor and an agent exchange files', () => {
  let agentContext;
  let agentPage;
  let visitorContext;
  let visitorPage;

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

  test('the visitor attaches an image; the agent sees its preview and sends a file back; both download', async () => {
    await consoleSignIn(agentPage, sb.base, 'grace');
    await agentPage.getByRole('link', { name: 'Conversations' }).click();
    const available = agentPage.getByRole('button', { name: 'Available' });
    await available.click();
    await eventually(async () => assert.equal(await available.getAttribute('aria-pressed'), 'true'), 'available');

    await visitorPage.goto(`${sb.base}/demo?deploymentId=${deployment.id}`);
    const w = widget(visitorPage);
    await w.launcher.click();
    const attach = visitorPage.getByRole('button', { name: 'Attach a file' });
    await attach.waitFor();
    // The file picker, as a person picks a file.
    const [chooser] = await Promise.all([visitorPage.waitForEvent('filechooser'), attach.click()]);
    await chooser.setFiles({ name: 'screenshot.png', mimeType: 'image/png', buffer: PNG });
    // Uploaded and sent: the visitor's own bubble shows the preview.
    const mine = w.log.getByRole('img', { name: 'screenshot.png' });
    await mine.waitFor();

    const offers = agentPage.getByRole('list', { name: 'Offers' });
    await offers.getByRole('button', { name: 'Accept Visitor' }).click();
    const card = agentPage.getByRole('article', { name: 'Visitor' });
    const preview = card.getByRole('log').getByRole('img', { name: 'screenshot.png' });
    await preview.waitFor();
    // A preview that really loaded: the image decoded in the page.
    await eventually(
      async () => assert.equal(await preview.evaluate((img) => img.complete && img.naturalWidth), 1),
      'the preview decodes',
    );
    const seen = await bytesAt(agentPage, await preview.getAttribute('src'));
    assert.deepEqual(seen, PNG);
    await agentPage.screenshot({ path: screenshotPath('console-attachment') });

    // The agent sends a file back through the card's file picker.
    const [picker] = await Promise.all([
      agentPage.waitForEvent('filechooser'),
      card.getByRole('button', { name: 'Attach a file for Visitor' }).click(),
    ]);
    await picker.setFiles({ name: 'invoice.txt', mimeType: 'text/plain', buffer: INVOICE });
    const link = w.log.getByRole('link', { name: /invoice\.txt/ });
    await link.waitFor();
    const href = await link.getAttribute('href');
    assert.match(href, /^http:\/\/127\.0\.0\.1:\d+\/api\/v1\/attachments\//);
    assert.deepEqual(await bytesAt(visitorPage, href), INVOICE);
    // The agent's own message shows the file too.
    await card.getByRole('log').getByRole('link', { name: /invoice\.txt/ }).waitFor();
    await visitorPage.screenshot({ path: screenshotPath('widget-attachment') });
  });
});
