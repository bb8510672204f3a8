// OIDC integrations: the identity providers visitors and staff sign in at.

import { h, mount, field } from '../dom.js';
import { PATHS, Problem, errorText, recordList, required } from './kit.js';
import { badge, button, byName, checkField, hinted, mono, quoted, row } from './widgets.js';

const DEFAULT_SCOPES = 'openid profile email';

const STEP_NAMES = { discovery: 'Discovery', issuer: 'Issuer', jwks: 'Signing keys', algorithms: 'Algorithms' };

function integrationBody(record, overrides) {
  return {
    name: record.name,
    issuer: record.issuer,
    clientId: record.clientId,
    scopes: record.scopes,
    authorizeParams: record.authorizeParams || {},
    allowedAlgorithms: record.allowedAlgorithms,
    maxRefreshTokenLifetimeSeconds: record.maxRefreshTokenLifetimeSeconds,
    refreshTokenRotation: record.refreshTokenRotation,
    active: record.active,
    version: record.version,
    ...overrides,
  };
}

function diagnosisView(integration, report, onClose) {
  const steps = report.steps || [];
  const seen = new Set(steps.map((s) => s.name));
  // Steps after the first failure never ran; say so rather than leave
  // them out.
  const notRun = Object.keys(STEP_NAMES).filter((n) => !seen.has(n));
  const facts = [
    ['Issuer', report.issuer],
    ['Authorization endpoint', report.authorizationEndpoint],
    ['Token endpoint', report.tokenEndpoint],
    ['Algorithms offered', report.algorithmsOffered?.length ? report.algorithmsOffered.join(', ') : null],
  ].filter(([, v]) => v);
  return h(
    'div',
    { class: `st-diagnosis ${report.ok ? 'st-passed' : 'st-failed'}` },
    h(
      'h3',
      null,
      report.ok
        ? `Test of ${quoted(integration.name)}: every check passed`
        : `Test of ${quoted(integration.name)}: a check failed`,
    ),
    h(
      'ul',
      { class: 'st-steps' },
      steps.map((s) =>
        h(
          'li',
          null,
          s.ok ? badge('Pass', 'ok') : badge('Fail', 'danger'),
          h('strong', null, STEP_NAMES[s.name] || s.name),
          h('span', null, s.detail),
        ),
      ),
      report.ok
        ? null
        : notRun.map((n) => h('li', null, badge('Not run', 'neutral'), h('strong', null, STEP_NAMES[n]), h('span', null, 'skipped after the failure'))),
    ),
    report.problem ? h('p', null, 'Problem code: ', mono(report.problem.code)) : null,
    facts.length
      ? h(
          'dl',
          { class: 'st-facts' },
          facts.map(([k, v]) => [h('dt', null, k), h('dd', null, mono(v))]),
        )
      : null,
    button('Close', { 'aria-label': `Close the test of ${integration.name}`, onclick: onClose }),
  );
}

export async function integrationsSection(ctx) {
  const { api, notify } = ctx;
  const origin = location.origin;
  // The last test of each integration, kept across the list's redraws.
  const results = new Map();

  const integrationRows = (i) => {
    const result = h('tr', { class: 'st-detail', hidden: true }, h('td', { colspan: '6' }));
    const show = (report) => {
      results.set(i.id, report);
      if (!report) {
        result.hidden = true;
        mount(result.firstChild);
        return;
      }
      result.hidden = false;
      mount(
        result.firstChild,
        report instanceof Error
          ? h('p', { class: 'st-error' }, `The test of ${quoted(i.name)} could not run: ${errorText(report)}`)
          : diagnosisView(i, report, () => {
              show(null);
              test.focus();
            }),
      );
    };
    const test = button('Test', {
      'aria-label': `Test ${i.name}`,
      onclick: async () => {
        test.disabled = true;
        test.textContent = 'Testing…';
        try {
          const report = await api.post(`${PATHS.integrations}/${i.id}/test`);
          show(report);
          notify(report.ok ? `${i.name}: every check passed.` : `${i.name}: ${report.problem?.message || 'a check failed'}`, report.ok ? 'info' : 'error');
        } catch (e) {
          show(e);
          notify(`The test of ${i.name} could not run.`, 'error');
        } finally {
          test.disabled = false;
          test.textContent = 'Test';
        }
      },
    });
    const main = row(
      i.name,
      mono(i.issuer),
      mono(i.clientId),
      i.active ? badge('Active', 'ok') : badge('Inactive', 'neutral'),
      i.clientSecretSet ? 'Set' : 'Not set',
      list.rowActions(i, i.name, {
        extra: [test],
        hint: 'Choose another integration there first (published configuration versions never change: delete their configuration, or keep this integration).',
        onDeleted: () => results.delete(i.id),
      }),
    );
    if (results.has(i.id)) show(results.get(i.id));
    return [main, result];
  };

  const list = recordList(ctx, 'integration', {
    title: 'OIDC integrations',
    intro: [
      h('p', null, 'The identity providers (Okta, Entra ID, Auth0, Keycloak, …) that visitors of sign-in deployments and staff sign in at.'),
      h(
        'p',
        null,
        'Redirect URIs the provider’s client must allow: ',
        mono(`${origin}/web-snippet/callback`),
        ' for visitors signing in through the widget, ',
        mono(`${origin}/auth/callback`),
        ' for staff signing in to this console.',
      ),
    ],
    headers: ['Name', 'Issuer', 'Client id', 'Status', 'Client secret'],
    read: async () => (await api.all(PATHS.integrations)).sort(byName),
    rowOf: integrationRows,
    edit: (...args) => edit(...args),
  });

  const edit = (record, message, opener) => {
    const isNew = !record;
    const name = h('input', { type: 'text', value: record?.name ?? '', required: true, maxlength: '200', autocomplete: 'off' });
    const issuer = h('input', {
      type: 'url',
      value: record?.issuer ?? '',
      required: true,
      placeholder: 'https://login.example.com/',
      autocomplete: 'off',
      spellcheck: 'false',
    });
    const clientId = h('input', { type: 'text', value: record?.clientId ?? '', required: true, maxlength: '255', autocomplete: 'off', spellcheck: 'false' });
    const secret = h('input', { type: 'password', value: '', autocomplete: 'new-password', spellcheck: 'false' });
    const scopes = h('input', { type: 'text', value: record ? record.scopes.join(' ') : DEFAULT_SCOPES, autocomplete: 'off', spellcheck: 'false' });
    const active = h('input', { type: 'checkbox', checked: record ? record.active : true });
    // On unless the record says otherwise: the server's default.
    const rotation = h('input', { type: 'checkbox', checked: record?.refreshTokenRotation ?? true });
    let secretHint = 'Write-only: switchboard keeps it sealed and never shows it again.';
    if (!isNew) {
      secretHint = record.clientSecretSet
        ? 'A secret is set. Leave this empty to keep it; type a new one to replace it.'
        : 'No secret is set. Leave this empty for a public client.';
    }

    list.openForm(record, opener, {
      error: message,
      onSubmit: async () => {
        const wanted = {
          name: required(name, 'The name'),
          issuer: required(issuer, 'The issuer'),
          clientId: required(clientId, 'The client id'),
          scopes: scopes.value.split(/\s+/).filter(Boolean),
          active: active.checked,
          refreshTokenRotation: rotation.checked,
        };
        try {
          new URL(wanted.issuer);
        } catch {
          throw new Problem('The issuer must be an absolute URL, such as https://login.example.com/.', issuer);
        }
        if (!wanted.scopes.includes('openid')) throw new Problem('The scopes must include openid.', scopes);
        // An empty secret on edit keeps the stored one: leave it out.
        if (secret.value) wanted.clientSecret = secret.value;
        const saved = await list.save(record, isNew ? wanted : integrationBody(record, wanted), opener);
        if (!saved) return;
        notify(
          isNew
            ? `Integration ${quoted(saved.name)} created. Test it to check the identity provider.`
            : `Integration ${quoted(wanted.name)} saved.`,
        );
        await list.done(opener);
      },
      children: [
        field('Name', name),
        hinted('Issuer', issuer, 'Exactly as the provider’s discovery document states it: a trailing slash matters.'),
        field('Client id', clientId),
        hinted('Client secret', secret, secretHint),
        hinted('Scopes', scopes, 'Separated by spaces; must include openid.'),
        checkField(
          'Rotate refresh tokens',
          rotation,
          'On detects a stolen refresh token (its reuse ends the session); off lets mobile SDKs that never store a rotated refresh token keep working.',
        ),
        checkField('Active', active),
      ],
    });
  };

  await list.load();
}
