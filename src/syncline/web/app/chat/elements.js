// DOM builders of the chat screen: room list items, message items, member items. Data in,
// elements out; the handlers come from the caller.

import * as directory from './directory.js';
import { avatar, clockTime, displayName, fullTime, h, icon, shortTime } from '../dom.js';

export function roomTitle(room) {
  if (room.kind === 'direct' && room.peer) return displayName(room.peer);
  return room.name || 'Untitled room';
}

/** A member's name: the directory knows it even for rows that came without one. */
export function memberName(member) {
  return displayName(directory.lookup(member.user_id) ?? member);
}

export function preview(room, me) {
  const last = room.last_message;
  if (!last) return 'No messages yet';
  if (last.deleted_at) return 'Message deleted';
  let who = '';
  if (last.user_id === me) who = 'You: ';
  else if (room.kind !== 'direct') {
    const user = directory.lookup(last.user_id);
    if (user) who = `${displayName(user)}: `;
  }
  return who + last.body.replace(/\s+/g, ' ');
}

/** A direct room shows its peer; other rooms a tile with their initial ('#' for the global one). */
export function roomAvatar(room) {
  if (room.kind === 'direct' && room.peer) return avatar(room.peer);
  const letter = room.kind === 'global' ? '#' : roomTitle(room).slice(0, 1).toUpperCase();
  return h('span', { class: `avatar avatar-md room-avatar room-${room.kind}`, 'aria-hidden': 'true' }, letter);
}

/** A room of the list: name, time and preview of the last message, unread badge. */
export function roomItem(room, { active, me }) {
  const unread = active ? 0 : room.unread_count ?? 0;
  return h(
    'li',
    {},
    h(
      'a',
      {
        class: `room-item${unread ? ' unread' : ''}`,
        href: `#/chat/${room.id}`,
        'data-testid': 'room-item',
        'data-room-id': room.id,
        'data-kind': room.kind,
        'aria-current': active ? 'page' : null,
      },
      roomAvatar(room),
      h(
        'span',
        { class: 'room-text' },
        h(
          'span',
          { class: 'room-line' },
          h('span', { class: 'room-name' }, roomTitle(room)),
          h('time', { class: 'room-time', datetime: room.last_message?.created_at ?? null }, shortTime(room.last_message?.created_at)),
        ),
        h(
          'span',
          { class: 'room-line' },
          h('span', { class: 'room-preview', 'data-testid': 'room-preview' }, preview(room, me)),
          unread
            ? h('span', { class: 'badge', 'data-testid': 'unread-badge', 'aria-label': `${unread} unread` }, unread > 99 ? '99+' : String(unread))
            : null,
        ),
      ),
    ),
  );
}

/** A member of the members panel, with a presence dot. */
export function memberItem(member, { online, me }) {
  return h(
    'li',
    { class: online ? 'online' : '', 'data-testid': 'member', 'data-online': String(online) },
    avatar({ id: member.user_id, display_name: memberName(member) }, 'sm'),
    h('span', { class: 'member-name' }, memberName(member), member.user_id === me ? ' (you)' : ''),
    h('span', { class: 'presence-dot', 'aria-label': online ? 'online' : 'offline' }),
  );
}

/** "Ann is typing…", "Ann and Ben are typing…", "Several people are typing…" or ''. */
export function typingText(names) {
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return names.length ? 'Several people are typing…' : '';
}

/**
 * One message of the list. `state`: sending, failed, sent or confirmed; `seen`: the names of
 * the readers whose newest read message this is; `on`: edit, remove, retry, discard.
 */
export function messageElement(msg, { own, grouped, seen, author, state }, on) {
  const user = author ?? { id: msg.user_id, username: '…' };
  const classes = ['msg'];
  if (own) classes.push('own');
  if (grouped) classes.push('grouped');
  if (msg.deleted_at) classes.push('deleted');
  if (state === 'sending' || state === 'failed') classes.push(`pending ${state}`);
  const li = h('li', {
    class: classes.join(' '),
    'data-testid': 'message-item',
    'data-id': msg.id ?? '',
    'data-client-id': msg.client_msg_id ?? '',
    'data-state': state,
    'data-author': user.username ?? '',
  });
  li.append(grouped ? h('span', { class: 'avatar-spacer', 'aria-hidden': 'true' }) : avatar(user));
  const main = h('div', { class: 'msg-main' });
  if (!grouped) {
    main.append(
      h(
        'div',
        { class: 'msg-meta' },
        h('span', { class: 'msg-author' }, own ? 'You' : displayName(user)),
        h('time', { datetime: msg.created_at, title: fullTime(msg.created_at) }, clockTime(msg.created_at)),
      ),
    );
  }
  if (msg.deleted_at) {
    main.append(h('p', { class: 'msg-body' }, 'This message was deleted.'));
  } else {
    main.append(
      h(
        'p',
        { class: 'msg-body', 'data-testid': 'message-body' },
        msg.body,
        msg.edited_at ? h('span', { class: 'msg-edited', title: `Edited ${fullTime(msg.edited_at)}` }, ' (edited)') : null,
      ),
    );
  }
  if (own && state === 'sending') {
    main.append(h('p', { class: 'msg-status' }, 'Sending…'));
  } else if (own && state === 'failed') {
    main.append(
      h(
        'p',
        { class: 'msg-status error-text' },
        'Not sent. ',
        h('button', { type: 'button', class: 'link-button', onclick: on.retry }, 'Retry'),
        ' · ',
        h('button', { type: 'button', class: 'link-button', onclick: on.discard }, 'Discard'),
      ),
    );
  }
  if (own && msg.id !== null && !msg.deleted_at) {
    main.append(
      h(
        'div',
        { class: 'msg-actions' },
        h('button', { type: 'button', class: 'btn-icon', title: 'Edit', 'aria-label': 'Edit message', 'data-testid': 'message-edit', onclick: on.edit }, icon('edit')),
        h('button', { type: 'button', class: 'btn-icon', title: 'Delete', 'aria-label': 'Delete message', 'data-testid': 'message-delete', onclick: on.remove }, icon('trash')),
      ),
    );
    main.append(
      h('span', {
        class: `msg-tick tick-${state}`,
        title: state === 'confirmed' ? 'Delivered' : 'Sent',
        'aria-label': state === 'confirmed' ? 'Delivered' : 'Sent',
      }, state === 'confirmed' ? '✓✓' : '✓'),
    );
  }
  if (seen.length) {
    const names = seen.length > 3 ? `${seen.slice(0, 3).join(', ')} and ${seen.length - 3} more` : seen.join(', ');
    main.append(h('p', { class: 'msg-seen', 'data-testid': 'seen-by' }, `Seen by ${names}`));
  }
  li.append(main);
  return li;
}
