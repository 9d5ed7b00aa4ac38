// Sign-in screens: log in, register, forgotten password, reset (from the mailed link), verify.

import { ApiError, request } from '../api.js';
import { field, h, replace, setFieldError } from '../dom.js';
import { go } from '../router.js';
import { store } from '../session.js';
import { busy } from '../ui.js';

const USERNAME = /^[A-Za-z0-9_.-]{3,32}$/;

function card(title, subtitle, ...body) {
  return h(
    'section',
    { class: 'auth' },
    h(
      'div',
      { class: 'auth-card' },
      h('div', { class: 'auth-logo', 'aria-hidden': 'true' }),
      h('h1', {}, title),
      subtitle ? h('p', { class: 'auth-sub' }, subtitle) : null,
      ...body,
    ),
  );
}

function alertBox(testid) {
  return h('div', { class: 'form-alert', role: 'alert', 'data-testid': testid, hidden: true });
}

function showAlert(box, message, kind = 'error') {
  box.textContent = message;
  box.dataset.kind = kind;
  box.hidden = !message;
}

/** A human message for an API error on the sign-in screens. */
function describe(err) {
  if (!(err instanceof ApiError)) return 'Something went wrong. Please try again.';
  if (err.code === 'invalid_credentials') return 'Wrong username or password.';
  if (err.status === 429) {
    const wait = err.retryAfter ? ` in ${err.retryAfter} s` : ' later';
    return `Too many attempts. Try again${wait}.`;
  }
  if (err.status === 0) return err.message;
  return err.message;
}

/** Password rules of the server, checked before sending so the user learns them early. */
export function passwordProblem(password, username = '') {
  if (password.length < 10) return 'Use at least 10 characters.';
  if (!/[A-Za-z]/.test(password) || !/[0-9]/.test(password)) return 'Use letters and digits.';
  if (username && password.toLowerCase() === username.toLowerCase()) {
    return "Don't use your username as the password.";
  }
  return '';
}

export function login(root, { onSignedIn, notice }) {
  const error = alertBox('login-error');
  const form = h(
    'form',
    { class: 'form', novalidate: true, 'aria-label': 'Log in' },
    error,
    field({ label: 'Username or email', id: 'login-username', autocomplete: 'username', required: true, 'data-testid': 'login-username', autofocus: true }),
    field({ label: 'Password', id: 'login-password', type: 'password', autocomplete: 'current-password', required: true, 'data-testid': 'login-password' }),
    h('button', { type: 'submit', class: 'btn btn-primary btn-block', 'data-testid': 'login-submit' }, 'Log in'),
  );
  if (notice) showAlert(error, notice, 'info');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const username = form.querySelector('#login-username').value.trim();
    const password = form.querySelector('#login-password').value;
    setFieldError(form, 'login-username', username ? '' : 'Enter your username or email.');
    setFieldError(form, 'login-password', password ? '' : 'Enter your password.');
    if (!username || !password) return;
    showAlert(error, '');
    try {
      const pair = await busy(form, () =>
        request('POST', '/api/auth/login', { body: { username, password }, auth: false }),
      );
      store(pair);
      onSignedIn();
    } catch (err) {
      showAlert(error, describe(err));
      form.querySelector('#login-password').select();
    }
  });
  replace(
    root,
    card(
      'Welcome back',
      'Log in to chat and follow your orders live.',
      form,
      h(
        'p',
        { class: 'auth-links' },
        h('a', { href: '#/forgot' }, 'Forgot your password?'),
      ),
      h(
        'p',
        { class: 'auth-switch' },
        'New here? ',
        h('a', { href: '#/register', 'data-testid': 'register-link' }, 'Create an account'),
      ),
    ),
  );
  root.querySelector('#login-username').focus();
}

export function register(root, { onSignedIn }) {
  const error = alertBox('register-error');
  const form = h(
    'form',
    { class: 'form', novalidate: true, 'aria-label': 'Create an account' },
    error,
    field({ label: 'Username', id: 'register-username', autocomplete: 'username', required: true, maxlength: 32, hint: '3–32 letters, digits, . _ or -', 'data-testid': 'register-username' }),
    field({ label: 'Email', id: 'register-email', type: 'email', autocomplete: 'email', required: true, maxlength: 254, 'data-testid': 'register-email' }),
    field({ label: 'Display name (optional)', id: 'register-display-name', autocomplete: 'name', maxlength: 64, 'data-testid': 'register-display-name' }),
    field({ label: 'Password', id: 'register-password', type: 'password', autocomplete: 'new-password', required: true, hint: 'At least 10 characters, with letters and digits.', 'data-testid': 'register-password' }),
    h('button', { type: 'submit', class: 'btn btn-primary btn-block', 'data-testid': 'register-submit' }, 'Create account'),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = (id) => form.querySelector(`#${id}`).value;
    const body = {
      username: value('register-username').trim(),
      email: value('register-email').trim(),
      password: value('register-password'),
    };
    const displayName = value('register-display-name').trim();
    if (displayName) body.display_name = displayName;
    const problems = {
      'register-username': USERNAME.test(body.username) ? '' : 'Use 3–32 letters, digits, . _ or -.',
      'register-email': /^[^\s@]+@[^\s@]+$/.test(body.email) ? '' : 'Enter a valid email address.',
      'register-password': passwordProblem(body.password, body.username),
    };
    for (const [id, message] of Object.entries(problems)) setFieldError(form, id, message);
    const first = Object.keys(problems).find((id) => problems[id]);
    if (first) {
      form.querySelector(`#${first}`).focus();
      return;
    }
    showAlert(error, '');
    try {
      const pair = await busy(form, () =>
        request('POST', '/api/auth/register', { body, auth: false }),
      );
      store(pair);
      onSignedIn();
    } catch (err) {
      const fieldId = { username_taken: 'register-username', email_taken: 'register-email' }[err.code];
      if (fieldId) {
        setFieldError(form, fieldId, err.code === 'username_taken' ? 'This username is taken.' : 'An account already uses this email.');
        form.querySelector(`#${fieldId}`).focus();
      } else {
        showAlert(error, describe(err));
      }
    }
  });
  replace(
    root,
    card(
      'Create your account',
      'It takes a few seconds. Everyone starts in the General room.',
      form,
      h('p', { class: 'auth-switch' }, 'Already have an account? ', h('a', { href: '#/login', 'data-testid': 'login-link' }, 'Log in')),
    ),
  );
  root.querySelector('#register-username').focus();
}

export function forgot(root) {
  const error = alertBox('forgot-message');
  const form = h(
    'form',
    { class: 'form', novalidate: true, 'aria-label': 'Reset your password' },
    error,
    field({ label: 'Email', id: 'forgot-email', type: 'email', autocomplete: 'email', required: true }),
    h('button', { type: 'submit', class: 'btn btn-primary btn-block' }, 'Send the reset link'),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const email = form.querySelector('#forgot-email').value.trim();
    if (!setFieldError(form, 'forgot-email', email ? '' : 'Enter your email.') || !email) return;
    try {
      await busy(form, () =>
        request('POST', '/api/auth/password-reset/request', { body: { email }, auth: false }),
      );
      showAlert(error, 'If an account uses this email, a reset link is on its way.', 'info');
    } catch (err) {
      showAlert(error, describe(err));
    }
  });
  replace(
    root,
    card('Forgot your password?', "We'll email you a link to choose a new one.", form, h('p', { class: 'auth-switch' }, h('a', { href: '#/login' }, 'Back to log in'))),
  );
}

export function reset(root, { query }) {
  const token = query.get('token') || '';
  const error = alertBox('reset-message');
  const form = h(
    'form',
    { class: 'form', novalidate: true, 'aria-label': 'Choose a new password' },
    error,
    field({ label: 'New password', id: 'reset-password', type: 'password', autocomplete: 'new-password', required: true, hint: 'At least 10 characters, with letters and digits.' }),
    h('button', { type: 'submit', class: 'btn btn-primary btn-block' }, 'Set the new password'),
  );
  if (!token) showAlert(error, 'This link has no token. Open the link from the email again.');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const password = form.querySelector('#reset-password').value;
    const problem = passwordProblem(password);
    setFieldError(form, 'reset-password', problem);
    if (problem || !token) return;
    try {
      await busy(form, () =>
        request('POST', '/api/auth/password-reset', { body: { token, new_password: password }, auth: false }),
      );
      go('#/login');
    } catch (err) {
      showAlert(error, err.status === 400 || err.status === 404 || err.status === 410 ? 'This reset link is invalid or has expired.' : describe(err));
    }
  });
  replace(root, card('Choose a new password', 'Every device will be signed out.', form));
}

export function verify(root, { query }) {
  const status = h('p', { class: 'auth-sub', role: 'status', 'data-testid': 'verify-status' }, 'Verifying your email…');
  replace(root, card('Email verification', '', status, h('p', { class: 'auth-switch' }, h('a', { href: '#/chat' }, 'Continue to Syncline'))));
  const token = query.get('token') || '';
  if (!token) {
    status.textContent = 'This link has no token. Open the link from the email again.';
    return;
  }
  request('POST', '/api/auth/verify-email', { body: { token }, auth: false }).then(
    () => (status.textContent = 'Thanks! Your email address is verified.'),
    (err) => (status.textContent = err.status >= 400 && err.status < 500 ? 'This verification link is invalid or has expired.' : describe(err)),
  );
}
