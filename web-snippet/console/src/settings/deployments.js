// Deployments: a published configuration version on the allowed origins,
// with its queue and the snippet a site pastes.

import { h, mount, field, formatDateTime } from '../dom.js';
import { PATHS, Problem, closeEditor, errorText, formCard, isConflict, lineList, openInEditor, recordList, required } from './kit.js';
import { badge, button, byName, checkField, copyText, group, hinted, mono, quoted, row, selectControl, signInBadge } from './widgets.js';

function deploymentBody(d, overrides) {
  return {
    name: d.name,
    description: d.description || '',
    configuration: { id: d.configuration.id, version: d.configuration.version },
    allowedDomains: d.allowedDomains,
    allowAllDomains: d.allowAllDomains,
    allowedAppHosts: d.allowedAppHosts,
    allowedAppRedirectSchemes: d.allowedAppRedirectSchemes,
    status: d.status,
    queueId: d.queueId,
    version: d.version,
    ...overrides,
  };
}

// Checks one allowed-domain line the way the server does: an origin only.
function originProblem(line) {
  let url;
  try {
    url = new URL(line);
  } catch {
    return `${quoted(line)} is not an origin like https://shop.example.com`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `${quoted(line)} must use http or https`;
  if (url.username || url.password) return `${quoted(line)} must name a host and nothing else`;
  if (url.pathname !== '/' || url.search || url.hash) {
    return `${quoted(line)} is an origin only: no path, query or fragment`;
  }
  return null;
}

// A host name as the server takes it (lowercased): letter-digit-hyphen
// labels of 1 to 63 characters, no leading or trailing hyphen, dot-separated,
// at most 253 characters.
const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
const isDnsName = (name) => name.length <= 253 && name.split('.').every((label) => DNS_LABEL.test(label));

// Checks one app host line: the bare host name a native app sends as its
// Origin. Browsers send "null" from sandboxed frames; it names no app.
function appHostProblem(line) {
  const host = line.toLowerCase();
  if (host === 'null') return '“null” is the origin of sandboxed browser frames, not an app’s host';
  if (!isDnsName(host)) return `${quoted(line)} is not a host name like webmessaging.chat.example.com: no scheme, port or path`;
  return null;
}

// Checks one redirect scheme line: RFC 8252's reverse-DNS form, which also
// keeps out http, javascript and every other scheme a browser acts on.
function redirectSchemeProblem(line) {
  const scheme = line.toLowerCase();
  if (!(isDnsName(scheme) && scheme.includes('.') && /^[a-z]/.test(scheme))) {
    return `${quoted(line)} is not a reverse-DNS scheme like com.example.app: the scheme only, without “:” or a path`;
  }
  return null;
}

export async function deploymentsSection(ctx) {
  const { api, notify } = ctx;
  const origin = location.origin;
  const cfgBase = PATHS.configurations;
  let configurations = [];
  let queues = [];
  let configById = new Map();
  let queueById = new Map();
  // Published versions are immutable: each is read once per visit.
  const versionContent = new Map();
  const contentOf = (id, version) => {
    const key = `${id}/${version}`;
    if (!versionContent.has(key)) {
      versionContent.set(key, api.get(`${cfgBase}/${id}/versions/${version}`).catch(() => null));
    }
    return versionContent.get(key);
  };
  const versionLists = new Map();
  const versionsOf = (id) => {
    if (!versionLists.has(id)) {
      const loading = api.all(`${cfgBase}/${id}/versions`).then((vs) => {
        for (const v of vs) versionContent.set(`${id}/${v.version}`, Promise.resolve(v));
        return vs.sort((a, b) => Number(b.version) - Number(a.version));
      });
      loading.catch(() => versionLists.delete(id));
      versionLists.set(id, loading);
    }
    return versionLists.get(id);
  };

  const { parts, load, rowActions, save } = recordList(ctx, 'deployment', {
    title: 'Deployments',
    intro: h(
      'p',
      null,
      'A deployment puts a published configuration version on the sites you allow and sends its conversations to a queue. Sites paste its snippet before ',
      mono('</body>'),
      '.',
    ),
    headers: ['Name', 'Status', 'Configuration', 'Visitors', 'Queue'],
    read: async (current) => {
      const [deployments, configurationList, queueList] = await Promise.all([
        api.all(PATHS.deployments),
        api.all(cfgBase),
        api.all(PATHS.queues),
      ]);
      // An older load must not replace what a newer one keeps for the form.
      if (!current()) return [];
      configurations = configurationList.sort(byName);
      queues = queueList.sort(byName);
      // A configuration published since the last look has new versions.
      versionLists.clear();
      configById = new Map(configurations.map((c) => [c.id, c]));
      queueById = new Map(queues.map((q) => [q.id, q]));
      const used = await Promise.all(deployments.map((d) => contentOf(d.configuration.id, d.configuration.version)));
      const newest = await Promise.all(
        deployments.map((d) => {
          const c = configById.get(d.configuration.id);
          return c?.latestVersion && Number(c.latestVersion) > Number(d.configuration.version)
            ? contentOf(c.id, c.latestVersion)
            : null;
        }),
      );
      return deployments.map((d, n) => ({ d, content: used[n], latest: newest[n] })).sort((a, b) => byName(a.d, b.d));
    },
    rowOf: ({ d, content, latest }) => {
      const c = configById.get(d.configuration.id);
      return row(
        d.name,
        d.status === 'Active' ? badge('Active', 'ok') : badge('Inactive', 'neutral'),
        h(
          'div',
          null,
          h('div', null, `${c ? c.name : d.configuration.id}, version ${d.configuration.version}`),
          latest ? upgrade(d, c, content, latest) : null,
        ),
        content ? signInBadge(content) : badge('Unknown', 'neutral'),
        queueById.get(d.queueId)?.name || d.queueId,
        rowActions(d, d.name, { hint: '' }),
      );
    },
    edit: (...args) => edit(...args),
  });

  // "Version N is published — Use version N": moves a deployment to its
  // configuration's newest version in one click.
  const upgrade = (d, c, content, latest) => {
    const n = c.latestVersion;
    const use = button(`Use version ${n}`, {
      class: 'st-button st-small st-accent',
      'aria-label': `Use version ${n} for ${d.name}`,
      onclick: async () => {
        const before = !!content?.authenticationSettings?.enabled;
        const after = !!latest?.authenticationSettings?.enabled;
        if (before !== after) {
          const change = after ? 'requires visitors to sign in' : 'lets guests chat without signing in';
          if (!confirm(`Version ${n} of ${quoted(c.name)} ${change}. Move ${quoted(d.name)} to it?`)) return;
        }
        parts.problem.textContent = '';
        use.disabled = true;
        try {
          await api.put(`${PATHS.deployments}/${d.id}`, deploymentBody(d, { configuration: { id: c.id, version: n } }));
          notify(`${d.name} now uses version ${n} of ${c.name}.`);
        } catch (e) {
          parts.problem.textContent = isConflict(e)
            ? `${quoted(d.name)} was changed by someone else; the list now shows it as it is.`
            : `${quoted(d.name)} cannot move to version ${n}: ${errorText(e)}`;
          use.disabled = false;
        }
        await load();
      },
    });
    return h('div', { class: 'st-upgrade' }, h('span', null, `Version ${n} is published`), use);
  };

  const edit = async (record, message, opener, focusCopy = false) => {
    // The form's selects need the lists of the first load.
    await firstLoad;
    const isNew = !record;
    parts.editor.dataset.id = record?.id || '';
    const published = configurations.filter((c) => c.publishedVersions > 0);
    if (isNew && (!published.length || !queues.length)) {
      const missing = [];
      if (!published.length) missing.push(h('li', null, 'a published ', h('a', { href: '#/settings/configurations' }, 'messenger configuration')));
      if (!queues.length) missing.push(h('li', null, 'a ', h('a', { href: '#/settings/queues' }, 'queue')));
      const note = h(
        'div',
        { class: 'st-card st-notice', tabindex: '-1' },
        h('p', null, 'A deployment needs:'),
        h('ul', null, missing),
        button('Close', { onclick: () => closeEditor(parts) }),
      );
      mount(parts.editor, note);
      note.focus();
      return;
    }

    const name = h('input', { type: 'text', value: record?.name ?? '', required: true, maxlength: '200', autocomplete: 'off' });
    const description = h('textarea', { rows: '2', maxlength: '2000' });
    description.value = record?.description ?? '';
    const configuration = selectControl(
      [
        ...(isNew ? [{ value: '', label: 'Choose a configuration' }] : []),
        ...configurations.map((c) => ({
          value: c.id,
          label: c.publishedVersions ? c.name : `${c.name} (not published)`,
          disabled: !c.publishedVersions,
        })),
      ],
      record?.configuration.id ?? (published.length === 1 ? published[0].id : ''),
    );
    const version = h('select', null);
    const versionHint = h('span');
    const allowAll = h('input', { type: 'checkbox', checked: !!record?.allowAllDomains });
    const domainList = lineList(record?.allowedDomains, {
      placeholder: 'https://shop.example.com',
      check: originProblem,
      what: 'allowed domains',
    });
    const domains = domainList.control;
    const appHosts = lineList(record?.allowedAppHosts, {
      placeholder: 'webmessaging.chat.example.com',
      check: appHostProblem,
      what: 'app host names',
    });
    const appSchemes = lineList(record?.allowedAppRedirectSchemes, {
      placeholder: 'com.example.app',
      check: redirectSchemeProblem,
      what: 'redirect schemes',
    });
    const status = selectControl(
      [
        { value: 'Active', label: 'Active' },
        { value: 'Inactive', label: 'Inactive: the widget does not show' },
      ],
      record?.status ?? 'Active',
    );
    const queue = selectControl(
      [{ value: '', label: 'Choose a queue' }, ...queues.map((q) => ({ value: q.id, label: q.name }))],
      record?.queueId ?? (queues.length === 1 ? queues[0].id : ''),
    );

    // The version select lists the chosen configuration's published
    // versions, newest ("latest") first.
    let versions = [];
    const describeVersion = () => {
      const v = versions.find((x) => x.version === version.value);
      mount(
        versionHint,
        v ? [signInBadge(v), ` Published ${formatDateTime(v.datePublished)}.`] : null,
      );
      domainAdvice();
    };
    const fillVersions = async (keep) => {
      versions = [];
      mount(version, h('option', { value: '' }, configuration.value ? 'Loading…' : 'Choose a configuration first'));
      version.disabled = true;
      describeVersion();
      if (!configuration.value) return;
      const chosen = configuration.value;
      try {
        const list = await versionsOf(chosen);
        if (configuration.value !== chosen) return;
        versions = list;
      } catch (e) {
        mount(version, h('option', { value: '' }, 'Versions cannot be loaded'));
        mount(versionHint, errorText(e));
        return;
      }
      mount(
        version,
        versions.map((v, n) => h('option', { value: v.version }, n === 0 ? `Version ${v.version} (latest)` : `Version ${v.version}`)),
      );
      version.disabled = false;
      if (keep && versions.some((v) => v.version === keep)) version.value = keep;
      else if (versions.length) version.value = versions[0].version;
      describeVersion();
    };
    configuration.addEventListener('change', () => fillVersions(null));
    version.addEventListener('change', describeVersion);

    // The demo page and the widget's sign-in popup run on this server's
    // own origin, so it must be allowed for either to work.
    const advice = h('div', { class: 'st-hint' });
    const domainAdvice = () => {
      const lines = domainList.lines();
      const allowed = allowAll.checked || lines.some((l) => l.replace(/\/$/, '').toLowerCase() === origin.toLowerCase());
      domains.disabled = allowAll.checked;
      if (allowed) {
        mount(advice);
        return;
      }
      const signIn = versions.find((x) => x.version === version.value)?.authenticationSettings?.enabled;
      mount(
        advice,
        `${origin} is not allowed: `,
        signIn ? 'visitors cannot sign in through the widget’s popup, and ' : '',
        'the demo page (Try it) cannot connect. ',
        button(`Add ${origin}`, {
          class: 'st-button st-small',
          onclick: () => {
            domains.value = [...lines, origin].join('\n');
            domains.dispatchEvent(new Event('input', { bubbles: true }));
            domains.focus();
          },
        }),
      );
    };
    domains.addEventListener('input', domainAdvice);
    allowAll.addEventListener('change', domainAdvice);

    const card = formCard({
      title: isNew ? 'New deployment' : `Edit ${quoted(record.name)}`,
      error: message,
      onCancel: () => {
        delete parts.editor.dataset.id;
        closeEditor(parts, opener);
      },
      onSubmit: async () => {
        const wanted = {
          name: required(name, 'The name'),
          description: description.value,
          status: status.value,
        };
        if (!configuration.value) throw new Problem('Choose a configuration.', configuration);
        if (!version.value) throw new Problem('Choose a published version of the configuration.', version);
        if (!queue.value) throw new Problem('Choose a queue.', queue);
        wanted.configuration = { id: configuration.value, version: version.value };
        wanted.queueId = queue.value;
        wanted.allowAllDomains = allowAll.checked;
        // The two are exclusive: allowing all sends no list.
        wanted.allowedDomains = allowAll.checked ? [] : domainList.read();
        wanted.allowedAppHosts = appHosts.read();
        wanted.allowedAppRedirectSchemes = appSchemes.read();
        const saved = await save(record, isNew ? wanted : deploymentBody(record, wanted), opener);
        if (!saved) return;
        notify(isNew ? `Deployment ${quoted(saved.name)} created: copy its snippet below.` : `Deployment ${quoted(saved.name)} saved.`);
        await load();
        // Stay on the record: its snippet is what one came for.
        await edit(saved, null, opener, true);
      },
      children: [
        field('Name', name),
        field('Description', description),
        field('Configuration', configuration),
        hinted('Configuration version', version, versionHint),
        group(
          'Where it runs',
          null,
          checkField('Allow all domains', allowAll, 'Any site may embed it. Prefer listing the sites.'),
          hinted('Allowed domains', domains, 'One origin per line, such as https://shop.example.com: scheme, host and port only.'),
          advice,
        ),
        group(
          'Native apps',
          'For mobile apps on Genesys’s Messenger Transport SDK. “Allow all domains” never admits them: list them here.',
          hinted(
            'App host names',
            appHosts.control,
            'One host name per line, as apps send it for Origin: webmessaging.<domain> (the socket) and <domain> (history), <domain> being the app’s configured domain. No scheme, port or path.',
          ),
          hinted(
            'App redirect schemes',
            appSchemes.control,
            'One per line: the reverse-DNS scheme (RFC 8252) an app receives its sign-in redirect on, such as com.example.app for com.example.app:/callback.',
          ),
        ),
        field('Status', status),
        hinted(
          'Queue',
          queue,
          queues.length ? null : h('span', null, 'There is no queue yet: ', h('a', { href: '#/settings/queues' }, 'add one'), '.'),
        ),
      ],
    });

    const snippet = record ? snippetCard(record) : null;
    // Right after a save, the snippet is what one came for.
    openInEditor(parts, [card.form, snippet?.card], focusCopy ? snippet?.copy : null);
    await fillVersions(record?.configuration.version);
  };

  const snippetCard = (d) => {
    const snippet = h('textarea', { readonly: true, rows: '12', class: 'st-mono st-snippet', spellcheck: 'false' });
    snippet.value = d.snippet;
    const demo = `/demo?deploymentId=${encodeURIComponent(d.id)}`;
    const copy = button('Copy snippet', { class: 'st-button st-primary', onclick: () => copyText(d.snippet, snippet, notify, 'Snippet') });
    const card = h(
      'div',
      { class: 'st-card' },
      h('h3', null, 'Embed on a site'),
      hinted('Snippet', snippet, ['Paste it before ', mono('</body>'), ' on every page of the allowed sites.']),
      h(
        'div',
        { class: 'st-actions' },
        copy,
        h('a', { class: 'st-button', href: demo, target: '_blank', rel: 'noopener' }, 'Try it', h('span', { class: 'st-vh' }, ' (opens in a new tab)')),
      ),
      h('p', { class: 'st-hint' }, 'Deployment id: ', mono(d.id)),
    );
    return { card, copy };
  };

  const firstLoad = load();
  await firstLoad;
}
