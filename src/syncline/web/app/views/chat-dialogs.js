// The chat's dialogs: new group, direct conversation (user search), join by invite, invite,
// add people. Each resolves with the room (RoomDetail) to open, or null.

import { request } from '../api.js';
import { avatar, displayName, field, h, replace, setFieldError } from '../dom.js';
import { busy, modal, toast } from '../ui.js';

function formDialog(title, { fields, submit, action, testid }) {
  return modal(title, (close) => {
    const error = h('div', { class: 'form-alert', role: 'alert', hidden: true });
    const form = h(
      'form',
      { class: 'form', novalidate: true },
      error,
      fields,
      h(
        'div',
        { class: 'dialog-actions' },
        h('button', { type: 'button', class: 'btn btn-ghost', onclick: () => close() }, 'Cancel'),
        h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': `${testid}-submit` }, submit),
      ),
    );
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      error.hidden = true;
      try {
        const result = await busy(form, () => action(form));
        if (result !== undefined) close(result);
      } catch (err) {
        error.textContent = err.message || 'Something went wrong.';
        error.hidden = false;
      }
    });
    queueMicrotask(() => form.querySelector('input')?.focus());
    return form;
  }, { testid });
}

export function newGroup() {
  return formDialog('New group', {
    testid: 'new-group',
    submit: 'Create group',
    fields: field({ label: 'Group name', id: 'group-name', required: true, maxlength: 64, autocomplete: 'off', 'data-testid': 'group-name' }),
    action: async (form) => {
      const name = form.querySelector('#group-name').value.trim();
      if (!name) {
        setFieldError(form, 'group-name', 'Give the group a name.');
        return undefined;
      }
      return request('POST', '/api/rooms', { body: { name } });
    },
  });
}

export function joinByToken(initial = '') {
  return formDialog('Join a group', {
    testid: 'join',
    submit: 'Join',
    fields: field({ label: 'Invite code', id: 'invite-token', required: true, maxlength: 200, autocomplete: 'off', value: initial, hint: 'Paste the code or the link someone shared with you.' }),
    action: async (form) => {
      let token = form.querySelector('#invite-token').value.trim();
      const match = token.match(/[?&]token=([^&]+)/);
      if (match) token = decodeURIComponent(match[1]);
      if (!token) {
        setFieldError(form, 'invite-token', 'Paste an invite code.');
        return undefined;
      }
      return request('POST', '/api/rooms/join', { body: { token } });
    },
  });
}

/** A searchable user list; `choose(user)` resolves the dialog's value. */
function userPicker(title, { me, exclude = new Set(), choose, testid }) {
  return modal(title, (close) => {
    const results = h('ul', { class: 'user-results', role: 'list', 'aria-label': 'People' });
    const status = h('p', { class: 'muted', role: 'status' }, 'Type a name to search.');
    const input = h('input', {
      id: `${testid}-q`,
      type: 'search',
      autocomplete: 'off',
      maxlength: 32,
      placeholder: 'Search by username',
      'data-testid': 'user-search',
    });
    let timer = null;
    let seq = 0;
    const search = async () => {
      const q = input.value.trim();
      const mine = ++seq;
      if (!q) {
        replace(results);
        status.textContent = 'Type a name to search.';
        return;
      }
      try {
        const users = await request('GET', '/api/users', { query: { q, limit: 20 } });
        if (mine !== seq) return;
        const shown = users.filter((u) => u.id !== me && !exclude.has(u.id));
        status.textContent = shown.length ? '' : 'Nobody found.';
        replace(
          results,
          shown.map((user) =>
            h(
              'li',
              {},
              h(
                'button',
                {
                  type: 'button',
                  class: 'user-result',
                  'data-testid': 'user-result',
                  'data-username': user.username,
                  onclick: async (event) => {
                    event.currentTarget.disabled = true;
                    try {
                      close(await choose(user));
                    } catch (err) {
                      toast(err.message, 'error');
                      event.currentTarget.disabled = false;
                    }
                  },
                },
                avatar(user, 'sm'),
                h('span', { class: 'user-result-name' }, displayName(user)),
                h('span', { class: 'muted' }, `@${user.username}`),
                user.online ? h('span', { class: 'online-dot', title: 'Online', 'aria-label': 'online' }) : null,
              ),
            ),
          ),
        );
      } catch (err) {
        if (mine === seq) status.textContent = err.message;
      }
    };
    input.addEventListener('input', () => {
      clearTimeout(timer);
      timer = setTimeout(search, 200);
    });
    queueMicrotask(() => input.focus());
    return [h('label', { class: 'sr-only', for: input.id }, 'Search people'), input, status, results];
  }, { testid });
}

export function newDirect(me) {
  return userPicker('New conversation', {
    me,
    testid: 'new-direct',
    choose: (user) => request('POST', '/api/rooms/direct', { body: { user_id: user.id } }),
  });
}

export function addPeople(room, me) {
  const exclude = new Set((room.members ?? []).map((m) => m.user_id));
  return userPicker(`Add people to ${room.name}`, {
    me,
    exclude,
    testid: 'add-people',
    choose: async (user) => {
      await request('POST', `/api/rooms/${room.id}/members`, { body: { user_id: user.id } });
      toast(`${displayName(user)} was added.`, 'success');
      return null;
    },
  });
}

export async function invite(room) {
  const result = await request('POST', `/api/rooms/${room.id}/invites`, { body: {} });
  const link = `${location.origin}/#/join?token=${encodeURIComponent(result.token)}`;
  return modal(`Invite to ${room.name}`, (close) => {
    const input = h('input', { id: 'invite-link', readonly: true, value: link, 'data-testid': 'invite-link' });
    const copy = async () => {
      try {
        await navigator.clipboard.writeText(link);
        toast('Link copied.', 'success');
      } catch {
        input.select();
      }
    };
    const expires = result.expires_at ? new Date(result.expires_at).toLocaleString() : '';
    return [
      h('p', {}, 'Anyone with this link can join the group.'),
      h('label', { for: 'invite-link' }, 'Invite link'),
      h('div', { class: 'copy-row' }, input, h('button', { type: 'button', class: 'btn btn-primary', onclick: copy }, 'Copy')),
      h('p', { class: 'muted' }, 'Invite code: ', h('code', { 'data-testid': 'invite-token' }, result.token)),
      expires ? h('p', { class: 'muted' }, `Valid until ${expires}.`) : null,
      h('div', { class: 'dialog-actions' }, h('button', { type: 'button', class: 'btn btn-ghost', onclick: () => close() }, 'Done')),
    ];
  }, { testid: 'invite' });
}
