// DOM helpers: build elements from data without innerHTML (user text is always a text node),
// and small formatting functions shared by the screens.

/**
 * Creates an element. `attrs`: `class`, `text`, `on<Event>` handlers, `dataset` ({}), boolean
 * and string attributes (false/null/undefined are skipped). Children: nodes, strings, arrays.
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {...any} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'value') el.value = value;
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces every child of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A labelled form field: <label> + <input> (+ hint and error slots linked by aria). */
export function field({ label, id, hint = '', ...input }) {
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const control = h('input', {
    id,
    name: id,
    'aria-describedby': [hint && hintId, errorId].filter(Boolean).join(' '),
    ...input,
  });
  return h(
    'div',
    { class: 'field' },
    h('label', { for: id }, label),
    control,
    hint ? h('p', { class: 'field-hint', id: hintId }, hint) : null,
    h('p', { class: 'field-error', id: errorId, 'aria-live': 'polite' }),
  );
}

/** Shows `message` under the field with `id` (or clears it) and marks the input invalid. */
export function setFieldError(form, id, message) {
  const input = form.querySelector(`#${id}`);
  const slot = form.querySelector(`#${id}-error`);
  if (!input || !slot) return false;
  slot.textContent = message || '';
  if (message) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
  return true;
}

/** Restarts a CSS animation class on `el` (a row flash, say). */
export function flash(el, className = 'flash') {
  el.classList.remove(className);
  void el.offsetWidth; // a reflow, so that re-adding the class restarts the animation
  el.classList.add(className);
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/** Parses the API's and the capture's timestamps ("2026-01-02T03:04:05.678+00:00", or with ' '). */
export function parseTime(value) {
  if (!value) return null;
  const date = new Date(typeof value === 'string' ? value.replace(' ', 'T') : value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** "14:05" today, "Mar 3" before. */
export function shortTime(value) {
  const date = parseTime(value);
  if (!date) return '';
  const today = new Date();
  return date.toDateString() === today.toDateString()
    ? timeFormat.format(date)
    : dayFormat.format(date);
}

export function clockTime(value) {
  const date = parseTime(value);
  return date ? timeFormat.format(date) : '';
}

export function fullTime(value) {
  const date = parseTime(value);
  return date ? fullFormat.format(date) : '';
}

/** Initials for an avatar: "Ann Lee" → "AL", "bob" → "B". */
export function initials(name) {
  const words = String(name || '?').trim().split(/[\s._-]+/).filter(Boolean);
  const letters = words.slice(0, 2).map((w) => [...w][0]);
  return (letters.join('') || '?').toUpperCase();
}

/** A stable hue (0-359) for a user id: the avatar colour. The golden angle spreads
 * neighbouring ids (often the people of one room) around the colour wheel. */
export function hue(id) {
  return Math.round(((Number(id) || 0) * 137.508) % 360);
}

/** A round avatar with initials; its colour is set through CSSOM (allowed by the CSP). */
export function avatar(user, size = 'md') {
  const el = h('span', { class: `avatar avatar-${size}`, 'aria-hidden': 'true' }, initials(displayName(user)));
  el.style.setProperty('--avatar-hue', String(hue(user?.id ?? user?.user_id)));
  return el;
}

export function displayName(user) {
  if (!user) return 'Someone';
  return user.display_name || user.username || `user ${user.id ?? user.user_id ?? ''}`.trim();
}

const ICONS = {
  edit: ['M4 20h4L18.5 9.5a2.1 2.1 0 0 0-4-4L4 16v4z', 'M13.5 6.5l4 4'],
  trash: ['M4 7h16', 'M10 11v6', 'M14 11v6', 'M5 7l1 12a2 2 0 0 0 2 2h8a2 2 0 0 0 2-2l1-12', 'M9 7V4h6v3'],
};

/** A small stroke icon (inline SVG built through the DOM; no emoji, whose glyphs may be missing). */
export function icon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', '16');
  svg.setAttribute('height', '16');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon');
  for (const d of ICONS[name]) {
    const path = document.createElementNS(ns, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
}
