// Messenger configurations: an editable draft, published as versions 1, 2, …

import { h, mount, field, formatDateTime } from '../dom.js';
import { PATHS, Problem, closeEditor, conflictText, errorText, formCard, numberIn, openInEditor, putFresh, recordList, required } from './kit.js';
import { badge, button, byName, checkField, dataTable, group, hinted, listText, mono, plural, quoted, row, selectControl, signInBadge } from './widgets.js';

const DEFAULT_COLOR = '#1f5eff';

function humanDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds <= 0) return '';
  const parts = [];
  const d = Math.floor(seconds / 86400);
  const hrs = Math.floor((seconds % 86400) / 3600);
  const min = Math.floor((seconds % 3600) / 60);
  const sec = seconds % 60;
  if (d) parts.push(plural(d, 'day'));
  if (hrs) parts.push(plural(hrs, 'hour'));
  if (min) parts.push(plural(min, 'minute'));
  if (sec) parts.push(plural(sec, 'second'));
  return parts.join(' ');
}

// <input type=color> only takes #rrggbb; the API also allows #rgb and
// #rrggbbaa.
function colorForInput(color) {
  const m = /^#([0-9a-f]{3}|[0-9a-f]{6}|[0-9a-f]{8})$/i.exec(color || '');
  if (!m) return DEFAULT_COLOR;
  let hex = m[1];
  if (hex.length === 3) hex = [...hex].map((c) => c + c).join('');
  return `#${hex.slice(0, 6).toLowerCase()}`;
}

function swatch(color) {
  const el = h('span', { class: 'st-swatch', 'aria-hidden': 'true' });
  el.style.background = colorForInput(color);
  return el;
}

export async function configurationsSection(ctx) {
  const { api, notify } = ctx;
  const base = PATHS.configurations;
  const { parts, load, rowActions, openForm } = recordList(ctx, 'configuration', {
    title: 'Messenger configurations',
    onNew: () => create(),
    intro: h(
      'p',
      null,
      'What the widget looks like and whether visitors sign in. You edit a draft; publishing freezes it as the next version. ' +
        'Deployments keep the version they use until you move them to a newer one.',
    ),
    headers: ['Name', 'Latest version', 'Published', 'Draft', 'Draft visitors', 'Draft changed'],
    read: async () => {
      const configurations = await api.all(base);
      // Whether each draft changed since its latest version was published.
      const latest = await Promise.all(
        configurations.map((c) => (c.latestVersion ? api.get(`${base}/${c.id}/versions/${c.latestVersion}`).catch(() => null) : null)),
      );
      return configurations.map((c, n) => ({ c, v: latest[n] })).sort((a, b) => byName(a.c, b.c));
    },
    rowOf: ({ c, v }) =>
      row(
        c.name,
        c.latestVersion ? `Version ${c.latestVersion}` : 'None',
        String(c.publishedVersions),
        draftState(c, v),
        signInBadge(c),
        formatDateTime(c.dateModified),
        rowActions(c, c.name, {
          hint: 'Move those deployments to another configuration first.',
          onEdit: (opener) => edit(c.id, {}, opener),
        }),
      ),
  });

  // Publishing stamps the draft and the new version with the same instant,
  // so a later draft change means changes not yet published.
  const draftState = (c, latestVersion) => {
    if (!c.latestVersion) return badge('Not published', 'warn');
    if (latestVersion && new Date(c.dateModified) > new Date(latestVersion.datePublished)) return badge('Unpublished changes', 'warn');
    return badge(`Same as version ${c.latestVersion}`, 'ok');
  };

  const create = () => {
    const name = h('input', { type: 'text', required: true, maxlength: '200', autocomplete: 'off' });
    openForm(null, null, {
      submitLabel: 'Create',
      onSubmit: async () => {
        // Everything else has defaults: a guest messenger in en-us.
        const created = await api.post(base, { name: required(name, 'The name') });
        notify(`Configuration ${quoted(created.name)} created. Adjust the draft, then publish it.`);
        load();
        await edit(created.id, {});
      },
      children: [hinted('Name', name, 'Then set the draft up and publish it as version 1.')],
    });
  };

  // The draft's editor, with Publish and the published versions.
  const edit = async (id, { message, notice, focusSave } = {}, opener) => {
    parts.editor.dataset.id = id;
    mount(parts.editor, h('p', { class: 'st-status', role: 'status' }, 'Loading the draft…'));
    let draft;
    let integrations;
    let versions;
    let deployments;
    try {
      [draft, integrations, versions, deployments] = await Promise.all([
        api.get(`${base}/${id}/versions/draft`),
        api.all(PATHS.integrations),
        api.all(`${base}/${id}/versions`),
        api.all(PATHS.deployments),
      ]);
    } catch (e) {
      mount(parts.editor, h('p', { class: 'st-error', role: 'alert' }, `The configuration cannot be loaded: ${errorText(e)}`));
      return;
    }
    integrations.sort(byName);
    versions.sort((a, b) => Number(b.version) - Number(a.version));
    const users = deployments.filter((d) => d.configuration.id === id);

    const auth = draft.authenticationSettings || {};
    const conversations = draft.messenger?.apps?.conversations || {};
    const storedColor = draft.messenger?.styles?.primaryColor || DEFAULT_COLOR;

    const name = h('input', { type: 'text', value: draft.name, required: true, maxlength: '200', autocomplete: 'off' });
    const description = h('textarea', { rows: '2', maxlength: '2000' });
    description.value = draft.description || '';
    const authRequired = h('input', { type: 'checkbox', checked: !!auth.enabled });
    const integration = selectControl(
      [
        { value: '', label: 'Choose an integration' },
        ...integrations.map((i) => ({ value: i.id, label: `${i.name} (${i.issuer})${i.active ? '' : ', inactive'}` })),
      ],
      auth.integrationId || '',
    );
    const color = h('input', { type: 'color', value: colorForInput(storedColor) });
    const colorText = h('output', { class: 'st-mono' }, storedColor);
    let colorTouched = false;
    color.addEventListener('input', () => {
      colorTouched = true;
      colorText.textContent = color.value;
    });
    const agentTyping = h('input', { type: 'checkbox', checked: conversations.showAgentTypingIndicator !== false });
    const userTyping = h('input', { type: 'checkbox', checked: conversations.showUserTypingIndicator !== false });
    const duration = h('input', {
      type: 'number',
      min: '60',
      max: '2592000',
      step: '1',
      value: conversations.sessionDurationSeconds ?? 1800,
      inputmode: 'numeric',
    });
    const durationHint = h('span');
    const launcher = selectControl(
      [
        { value: 'On', label: 'On: always shown' },
        { value: 'OnDemand', label: 'On demand: hidden until the app or page opens the messenger' },
        { value: 'Off', label: 'Off: never shown' },
      ],
      draft.messenger?.launcherButton?.visibility || 'On',
    );
    const notifications = conversations.notifications || {};
    const push = h('input', { type: 'checkbox', checked: !!notifications.enabled });
    const pushContent = selectControl(
      [
        { value: 'ExcludeMessagesContent', label: 'Only that a message came' },
        { value: 'IncludeMessagesContent', label: 'The message text' },
      ],
      notifications.notificationContentType || 'ExcludeMessagesContent',
    );
    // What a push carries matters only when there are pushes.
    const pushChanged = () => {
      pushContent.disabled = !push.checked;
    };
    pushChanged();
    push.addEventListener('change', pushChanged);
    const describeDuration = () => {
      const text = humanDuration(Number(duration.value));
      durationHint.textContent = `${text ? `${text}. ` : ''}A visitor’s session with no activity for this long expires (60 seconds to 30 days).`;
    };
    describeDuration();
    duration.addEventListener('input', describeDuration);

    // The draft as read, with the form's changes: fields this form does not
    // show go back exactly as they came.
    const edited = () => {
      const next = JSON.parse(JSON.stringify(draft));
      next.name = required(name, 'The name');
      next.description = description.value;
      if (authRequired.checked && !integration.value) {
        throw new Problem('Choose the integration visitors sign in with, or clear “Authentication required”.', integration);
      }
      next.authenticationSettings = {
        ...next.authenticationSettings,
        enabled: authRequired.checked,
        integrationId: integration.value || null,
      };
      const seconds = numberIn(duration, 'The session duration', 60, 2592000);
      next.messenger = next.messenger || {};
      next.messenger.styles = { ...next.messenger.styles, primaryColor: colorTouched ? color.value : storedColor };
      next.messenger.launcherButton = { ...next.messenger.launcherButton, visibility: launcher.value };
      next.messenger.apps = next.messenger.apps || {};
      next.messenger.apps.conversations = {
        ...next.messenger.apps.conversations,
        showAgentTypingIndicator: agentTyping.checked,
        showUserTypingIndicator: userTyping.checked,
        sessionDurationSeconds: seconds,
        notifications: {
          ...next.messenger.apps.conversations?.notifications,
          enabled: push.checked,
          notificationContentType: pushContent.value,
        },
      };
      return next;
    };

    // Saves the draft; false when it was stale (the editor then shows the
    // current draft).
    const save = async () => {
      const saved = await putFresh(api, `${base}/${id}/versions/draft`, edited(), async () => {
        load();
        await edit(id, { message: conflictText('configuration') }, opener);
      });
      return saved !== null;
    };

    const publish = button('Publish', {
      class: 'st-button st-accent',
      onclick: () =>
        card.run(async () => {
          const latest = versions[0];
          const unchanged = latest && !card.dirty && !(new Date(draft.dateModified) > new Date(latest.datePublished));
          if (unchanged && !confirm(`The draft is the same as version ${latest.version}. Publish it again as a new version?`)) return;
          // Publish what the form shows, not an older stored draft.
          if (card.dirty && !(await save())) return;
          const published = await api.post(`${base}/${id}/versions/draft/publish`);
          notify(`Published version ${published.version} of ${quoted(published.name)}.`);
          const behind = users.filter((d) => d.configuration.version !== published.version);
          load();
          // Publishing changes the draft's version: read it again.
          await edit(id, { notice: { version: published.version, behind } }, opener);
        }),
    });

    const card = formCard({
      title: `Edit ${quoted(draft.name)}`,
      error: message,
      extra: publish,
      onCancel: () => {
        delete parts.editor.dataset.id;
        closeEditor(parts, opener);
      },
      onSubmit: async () => {
        if (!(await save())) return;
        notify(`Draft of ${quoted(name.value.trim())} saved. Publish it to use it in deployments.`);
        load();
        await edit(id, { focusSave: true }, opener);
      },
      children: [
        publishState(draft, versions),
        field('Name', name),
        field('Description', description),
        group(
          'Sign-in',
          null,
          checkField('Authentication required', authRequired, 'Visitors sign in at the integration’s identity provider before they can send messages.'),
          hinted(
            'Sign-in integration',
            integration,
            integrations.length ? null : h('span', null, 'There is no OIDC integration yet: ', h('a', { href: '#/settings/integrations' }, 'add one'), '.'),
          ),
        ),
        group(
          'Messenger',
          null,
          h('div', { class: 'st-color' }, field('Primary colour', color), colorText),
          checkField('Agent typing indicator', agentTyping, 'Visitors see when an agent is typing.'),
          checkField('Visitor typing indicator', userTyping, 'Agents see when the visitor is typing.'),
          hinted('Session duration (seconds)', duration, durationHint),
          hinted(
            'Launcher button',
            launcher,
            'Whether Genesys messengers and apps show their launcher; switchboard’s web widget always shows its own.',
          ),
          h(
            'p',
            { class: 'st-hint' },
            `Languages: ${(draft.languages || []).join(', ') || 'none'} (default ${draft.defaultLanguage || 'none'}). ` +
              'Other settings keep their values; the API changes them.',
          ),
        ),
        group(
          'Mobile apps',
          null,
          checkField(
            'Push notifications',
            push,
            'Apps may register their devices for push notifications. switchboard stores the registrations; it does not send pushes yet.',
          ),
          hinted('Notification content', pushContent, 'What a push may show: the message text, or only that a message came.'),
        ),
        h('p', { class: 'st-hint' }, 'Publish saves the form’s changes first, then freezes the draft as the next version.'),
      ],
    });

    const shown = notice ? publishedNotice(notice) : null;
    // After publishing, the focus goes to what happened; after saving,
    // back to Save; otherwise to the top of the form.
    const saveButton = card.form.querySelector('button[type=submit]');
    openInEditor(parts, [shown, card.form, versionsCard(versions, users)], shown || (focusSave ? saveButton : null));
  };

  const publishState = (draft, versions) => {
    const latest = versions[0];
    let state;
    if (!latest) state = [badge('Not published', 'warn'), ' Publish the draft to use it in a deployment.'];
    else if (new Date(draft.dateModified) > new Date(latest.datePublished)) {
      state = [badge('Unpublished changes', 'warn'), ` The draft differs from version ${latest.version}.`];
    } else state = [badge(`Same as version ${latest.version}`, 'ok'), ` Published ${formatDateTime(latest.datePublished)}.`];
    return h('p', { class: 'st-publish-state' }, state);
  };

  const publishedNotice = ({ version, behind }) =>
    h(
      'div',
      { class: 'st-card st-notice', role: 'status', tabindex: '-1' },
      h('p', null, h('strong', null, `Version ${version} is published.`)),
      behind.length
        ? h(
            'p',
            null,
            `${listText(behind.map((d) => `${quoted(d.name)} (version ${d.configuration.version})`))} still ${
              behind.length === 1 ? 'uses an older version' : 'use older versions'
            }: move ${behind.length === 1 ? 'it' : 'them'} in `,
            h('a', { href: '#/settings/deployments' }, 'Deployments'),
            '.',
          )
        : null,
    );

  await load();
}

function versionsCard(versions, users) {
  const usedBy = (v) => {
    const names = users.filter((d) => d.configuration.version === v.version).map((d) => d.name);
    return names.length ? names.join(', ') : '—';
  };
  return h(
    'div',
    { class: 'st-card' },
    h('h3', null, 'Published versions'),
    versions.length
      ? dataTable(
          'Published versions',
          ['Version', 'Published', 'Visitors', 'Primary colour', 'Used by'],
          versions.map((v) =>
            row(
              `Version ${v.version}`,
              formatDateTime(v.datePublished),
              signInBadge(v),
              h('span', { class: 'st-color-cell' }, swatch(v.messenger?.styles?.primaryColor), mono(v.messenger?.styles?.primaryColor || '')),
              usedBy(v),
            ),
          ),
        )
      : h('p', null, 'None yet.'),
  );
}
