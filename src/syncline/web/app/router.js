// Hash routes (#/chat/12, #/reset?token=…): the server only ever serves index.html.

/** @typedef {{name: string, params: Record<string, string>, query: URLSearchParams}} Route */

/** Parses a hash such as "#/chat/12?x=1" into {name: 'chat', params: {id: '12'}, query}. */
export function parse(hash) {
  const text = hash.replace(/^#\/?/, '');
  const [path, search = ''] = text.split('?', 2);
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const query = new URLSearchParams(search);
  const [name = '', id] = parts;
  return { name, params: id === undefined ? {} : { id }, query };
}

export function go(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = hash;
}

/** Replaces the current history entry (a redirect, not a new page). */
export function redirect(hash) {
  history.replaceState(null, '', hash);
  window.dispatchEvent(new HashChangeEvent('hashchange'));
}
