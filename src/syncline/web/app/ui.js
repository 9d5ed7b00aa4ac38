// Shared widgets: toasts, modal dialogs (native <dialog>: focus trap and Esc for free).

import { h } from './dom.js';

/** A short notice in the corner; `kind` is 'info', 'error' or 'success'. */
export function toast(message, kind = 'info', ms = 4000) {
  const box = document.getElementById('toasts');
  const el = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : null }, message);
  box.append(el);
  setTimeout(() => {
    el.classList.add('toast-out');
    setTimeout(() => el.remove(), 300);
  }, ms);
}

/**
 * Opens a modal with a title and a body; resolves with the value passed to close() (or null
 * when dismissed). `build(close)` returns the body's nodes.
 */
export function modal(title, build, { testid = 'dialog' } = {}) {
  return new Promise((resolve) => {
    const titleId = `dialog-title-${Math.random().toString(36).slice(2)}`;
    const dialog = h('dialog', { class: 'dialog', 'aria-labelledby': titleId, 'data-testid': testid });
    let result = null;
    const close = (value = null) => {
      result = value;
      dialog.close();
    };
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(result);
    });
    dialog.addEventListener('click', (event) => {
      if (event.target === dialog) close(); // the backdrop
    });
    dialog.append(
      h(
        'div',
        { class: 'dialog-head' },
        h('h2', { id: titleId }, title),
        h('button', { type: 'button', class: 'btn-icon', 'aria-label': 'Close', onclick: () => close() }, '×'),
      ),
      h('div', { class: 'dialog-body' }, build(close)),
    );
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** A yes/no question; resolves true when confirmed. */
export async function confirm(title, text, okLabel = 'OK', { danger = false } = {}) {
  const answer = await modal(title, (close) => [
    h('p', {}, text),
    h(
      'div',
      { class: 'dialog-actions' },
      h('button', { type: 'button', class: 'btn btn-ghost', onclick: () => close(false) }, 'Cancel'),
      h(
        'button',
        {
          type: 'button',
          class: `btn ${danger ? 'btn-danger' : 'btn-primary'}`,
          'data-testid': 'confirm-ok',
          onclick: () => close(true),
        },
        okLabel,
      ),
    ),
  ], { testid: 'confirm-dialog' });
  return answer === true;
}

/** Disables a form's controls while `task` runs (no double submits). */
export async function busy(form, task) {
  const controls = [...form.querySelectorAll('button, input, select, textarea')];
  const was = controls.map((c) => c.disabled);
  controls.forEach((c) => (c.disabled = true));
  form.setAttribute('aria-busy', 'true');
  try {
    return await task();
  } finally {
    controls.forEach((c, i) => (c.disabled = was[i]));
    form.removeAttribute('aria-busy');
  }
}
