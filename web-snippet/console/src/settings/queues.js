// Queues: where conversations wait for agents.

import { h, field } from '../dom.js';
import { PATHS, numberIn, recordList, required } from './kit.js';
import { byName, checkField, group, hinted, plural, quoted, row } from './widgets.js';

export async function queuesSection(ctx) {
  const { api, notify, admin } = ctx;
  let members = [];
  let memberName = new Map();
  const list = recordList(ctx, 'queue', {
    title: 'Queues',
    intro: [
      h('p', null, 'Conversations of a deployment go to its queue and are offered to the queue’s members who are available.'),
      admin ? null : h('p', { class: 'st-note' }, 'Read-only: only admins change queues.'),
    ],
    headers: ['Name', 'Offer timeout', 'Capacity per agent', 'Members'],
    read: async (current) => {
      const [queues, memberList] = await Promise.all([api.all(PATHS.queues), api.all(PATHS.members)]);
      // The form's member checkboxes follow the newest list only.
      if (current()) {
        members = memberList.sort(byName);
        memberName = new Map(members.map((m) => [m.id, m.displayName]));
      }
      return queues.sort(byName);
    },
    rowOf: (q) => {
      const names = q.memberIds.map((id) => memberName.get(id) || id);
      const cells = [
        `${q.offerTimeoutSeconds} s`,
        plural(q.agentCapacity, 'conversation'),
        h('span', { title: names.join(', ') || null }, q.memberIds.length ? `${q.memberIds.length}: ${names.join(', ')}` : '0'),
      ];
      if (!admin) return row(q.name, ...cells);
      return row(q.name, ...cells, list.rowActions(q, q.name, { hint: 'Give those deployments another queue first.' }));
    },
    edit: (...args) => edit(...args),
  });

  const edit = async (record, message, opener) => {
    // The member checkboxes need the list of the first load.
    await firstLoad;
    const isNew = !record;
    const name = h('input', { type: 'text', value: record?.name ?? '', required: true, maxlength: '200', autocomplete: 'off' });
    const timeout = h('input', { type: 'number', min: '5', max: '600', step: '1', value: record?.offerTimeoutSeconds ?? 30, inputmode: 'numeric' });
    const capacity = h('input', { type: 'number', min: '1', max: '50', step: '1', value: record?.agentCapacity ?? 3, inputmode: 'numeric' });
    const cooldown = h('input', { type: 'number', min: '1', max: '3600', step: '1', value: record?.declineCooldownSeconds ?? 60, inputmode: 'numeric' });
    // Empty: no limit.
    const maxWait = h('input', { type: 'number', min: '1', max: '86400', step: '1', value: record?.maxWaitSeconds ?? '', inputmode: 'numeric' });
    const chosen = new Set(record?.memberIds || []);
    const boxes = members.map((m) => {
      const box = h('input', { type: 'checkbox', value: m.id, checked: chosen.has(m.id) });
      return { id: m.id, box, node: checkField(m.displayName, box, [m.email, m.roles.join(', ')].filter(Boolean).join(' · ') || null) };
    });
    list.openForm(record, opener, {
      error: message,
      onSubmit: async () => {
        const body = {
          name: required(name, 'The name'),
          offerTimeoutSeconds: numberIn(timeout, 'The offer timeout', 5, 600),
          agentCapacity: numberIn(capacity, 'The capacity', 1, 50),
          declineCooldownSeconds: numberIn(cooldown, 'The decline cool-down', 1, 3600),
          // A whole-record save: an empty box is "no limit", not "unchanged".
          maxWaitSeconds: maxWait.value.trim() === '' ? null : numberIn(maxWait, 'The wait limit', 1, 86400),
          // Only members this list knows: an id of a deleted member would
          // be refused.
          memberIds: boxes.filter((b) => b.box.checked).map((b) => b.id),
        };
        const saved = await list.save(record, isNew ? body : { ...body, version: record.version }, opener);
        if (!saved) return;
        notify(isNew ? `Queue ${quoted(saved.name)} created.` : `Queue ${quoted(body.name)} saved.`);
        await list.done(opener);
      },
      children: [
        field('Name', name),
        hinted('Offer timeout (seconds)', timeout, 'How long an agent has to accept an offer before it goes to another (5 to 600).'),
        hinted('Capacity per agent', capacity, 'Conversations one agent of this queue handles at once (1 to 50).'),
        hinted('Decline cool-down (seconds)', cooldown, 'After an agent declines or lets an offer lapse, how long before that agent is offered the conversation again (1 to 3600).'),
        hinted('Wait limit (seconds)', maxWait, 'How long a visitor waits for an agent before the conversation ends and the visitor is told (1 to 86400; empty for no limit).'),
        group(
          'Members',
          null,
          boxes.length
            ? h('div', { class: 'st-checklist' }, boxes.map((b) => b.node))
            : h('p', null, 'There are no members yet: ', h('a', { href: '#/settings/members' }, 'add them'), ' first.'),
        ),
      ],
    });
  };

  const firstLoad = list.load();
  await firstLoad;
}
