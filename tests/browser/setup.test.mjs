// First run in a real browser: a fresh node, whose console cannot be
// signed in to yet, sends the operator to the one-time setup page; the
// bootstrap token and the staff IdP go in there, and the first person to
// sign in through it becomes the admin (the console shows Settings).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launchBrowser, startIdp, startSwitchboard } from './support.mjs';

let sb;
let idp;
let browser;

before(async () => {
  sb = await startSwitchboard();
  idp = await startIdp([`${sb.base}/auth/callback`]);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await idp?.stop();
  await sb?.stop();
});

describe('first run', () => {
  test('the setup page names the staff sign-in and the first sign-in is the admin', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const blocked = [];
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy/.test(m.text())) blocked.push(m.text());
    });

    // The console's Sign in leads to setup on a fresh install.
    await page.goto(`${sb.base}/console`);
    await page.getByRole('link', { name: 'Sign in' }).click();
    await page.getByRole('link', { name: 'Set up staff sign-in' }).click();
    await page.waitForURL(`${sb.base}/setup`);
    await page.getByRole('heading', { name: 'Set up switchboard' }).waitFor();
    assert.equal(await page.locator('#callback').textContent(), `${sb.base}/auth/callback`);

    // A wrong token is refused, and nothing is set up.
    await page.getByLabel('Bootstrap token').fill('sbb_not-the-token-at-all');
    await page.getByLabel('Issuer').fill(idp.issuer);
    await page.getByLabel('Client id').fill(idp.clientId);
    await page.getByLabel('Client secret').fill(idp.clientSecret);
    await page.getByRole('button', { name: 'Save and continue' }).click();
    await page.getByText('(unauthorized)').waitFor();

    await page.getByLabel('Bootstrap token').fill(sb.bootstrap);
    await page.getByRole('button', { name: 'Save and continue' }).click();
    await page.getByText('Staff sign-in is set up').waitFor();
    await page.getByRole('link', { name: 'Sign in as the first admin' }).click();
    await page.waitForURL(/\/interaction\//);
    await page.locator('input[name=login]').fill('root');
    await page.locator('input[name=password]').fill('any');
    await page.locator('button[type=submit]').click();
    await page.waitForURL(`${sb.base}/console`);
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
    // Only an admin has the settings pages.
    await page.getByRole('link', { name: 'Settings' }).waitFor();

    // Once only: a second setup is refused, and the page says so.
    const again = await context.newPage();
    await again.goto(`${sb.base}/setup`);
    await again.getByLabel('Bootstrap token').fill(sb.bootstrap);
    await again.getByLabel('Issuer').fill(idp.issuer);
    await again.getByLabel('Client id').fill(idp.clientId);
    await again.getByRole('button', { name: 'Save and continue' }).click();
    await again.getByText('Setup is done already').waitFor();

    // The next person to sign in is an agent, not another admin.
    const other = await browser.newContext();
    const second = await other.newPage();
    await second.goto(`${sb.base}/console`);
    await second.getByRole('link', { name: 'Sign in' }).click();
    await second.waitForURL(/\/interaction\//);
    await second.locator('input[name=login]').fill('someone');
    await second.locator('input[name=password]').fill('any');
    await second.locator('button[type=submit]').click();
    await second.waitForURL(`${sb.base}/console`);
    await second.getByRole('button', { name: 'Sign out' }).waitFor();
    assert.equal(await second.getByRole('link', { name: 'Settings' }).count(), 0);

    assert.deepEqual(blocked, [], 'the page runs under its CSP');
    await other.close();
    await context.close();
  });
});
