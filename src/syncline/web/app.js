// Syncline's web client: the shell (top bar, connection indicator, routing) around the screens.

import { request } from './app/api.js';
import { clearDirectory } from './app/chat/directory.js';
import { h, replace } from './app/dom.js';
import * as realtime from './app/realtime.js';
import { parse, redirect } from './app/router.js';
import { accessToken, clear, currentUser, load, onChange, updateUser } from './app/session.js';
import { toast } from './app/ui.js';
import * as auth from './app/views/auth.js';
import { ChatView } from './app/views/chat.js';
import { OrdersView } from './app/views/orders.js';

const PUBLIC = new Set(['login', 'register', 'forgot', 'reset', 'verify']);
const STATUS_TEXT = {
  connected: 'Connected',
  connecting: 'Connecting…',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
};

const main = document.getElementById('main');
let view = null; // {name, instance}
let loginNotice = '';

function showShell(signedIn) {
  document.getElementById('topnav').hidden = !signedIn;
  document.getElementById('usermenu').hidden = !signedIn;
  document.body.classList.toggle('signed-in', signedIn);
  const user = currentUser();
  document.getElementById('usermenu-name').textContent = user
    ? user.display_name || user.username
    : '';
}

function mount(name, factory, route) {
  if (view?.name === name && view.instance?.update) {
    view.instance.update(route);
    return;
  }
  view?.instance?.destroy?.();
  view = null;
  replace(main);
  view = { name, instance: factory(route) };
}

function render() {
  const route = parse(location.hash);
  // A dialog belongs to the screen it was opened on.
  for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
  const signedIn = load() !== null;
  showShell(signedIn);
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === route.name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (!signedIn && !PUBLIC.has(route.name)) {
    if (route.name === 'join') sessionStorage.setItem('syncline.after-login', location.hash);
    redirect('#/login');
    return;
  }
  if (signedIn && (route.name === 'login' || route.name === 'register' || route.name === '')) {
    redirect('#/chat');
    return;
  }
  if (signedIn) realtime.start().catch((err) => toast(`Cannot start the live connection: ${err.message}`, 'error'));
  const onSignedIn = () => {
    const next = sessionStorage.getItem('syncline.after-login');
    sessionStorage.removeItem('syncline.after-login');
    redirect(next || '#/chat');
  };
  switch (route.name) {
    case 'login': {
      const notice = loginNotice;
      loginNotice = '';
      mount('login', () => auth.login(main, { onSignedIn, notice }), route);
      break;
    }
    case 'register':
      mount('register', () => auth.register(main, { onSignedIn }), route);
      break;
    case 'forgot':
      mount('forgot', () => auth.forgot(main), route);
      break;
    case 'reset':
      mount('reset', () => auth.reset(main, route), route);
      break;
    case 'verify':
      mount('verify', () => auth.verify(main, route), route);
      break;
    case 'chat':
    case 'join':
      mount('chat', (r) => new ChatView(main, r), route);
      break;
    case 'orders':
      mount('orders', () => new OrdersView(main), route);
      break;
    default:
      replace(main, h('section', { class: 'empty-page' }, h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '#/chat' }, 'Go to the chat'))));
      view = null;
  }
  document.title = `Syncline · ${route.name ? route.name[0].toUpperCase() + route.name.slice(1) : 'Home'}`;
}

function endSession(message) {
  realtime.stop();
  clearDirectory();
  view?.instance?.destroy?.();
  view = null;
  loginNotice = message;
  redirect('#/login');
}

onChange((reason) => {
  if (reason === 'revoked') endSession('Your session has ended. Please log in again.');
  else if (reason === 'logout') endSession('');
  else if (reason === 'user') showShell(true);
  else if (reason === 'stored' && PUBLIC.has(parse(location.hash).name)) render();
});

document.getElementById('logout').addEventListener('click', async () => {
  let token = null;
  try {
    token = await accessToken(); // refreshed first if it expired: the server must accept it
  } catch {
    // already revoked or offline: forgetting the tokens locally is what matters
  }
  clear('logout'); // the page signs out at once; the server's revocation follows
  if (token) {
    fetch('/api/auth/logout', { method: 'POST', headers: { Authorization: `Bearer ${token}` }, keepalive: true }).catch(() => {});
  }
});

realtime.onStatus((status) => {
  const el = document.getElementById('connection-status');
  el.dataset.state = status;
  el.querySelector('.conn-text').textContent = STATUS_TEXT[status];
  el.title = status === 'offline' && navigator.onLine === false ? 'No network' : STATUS_TEXT[status];
});

window.addEventListener('hashchange', render);
render();

// A session revoked elsewhere (password reset, "log out other sessions") shows up here.
if (load()) {
  request('GET', '/api/users/me').then(updateUser, () => {});
}
