// A minimal EventSource for Node 20 (which has none) over fetch, enough for centrifuge-js's
// SSE transport: onopen, onmessage, onerror, close(). It parses the stream as the HTML spec
// says (lines ending in LF, CR or CRLF; "data" fields joined with LF; comments and other fields
// ignored; an event dispatched at a blank line) but never reconnects: centrifuge-js closes the
// EventSource on the first error and reconnects itself. Browsers' own EventSource is what the
// web UI's browser tests use.
'use strict';

class MinimalEventSource {
  constructor(url) {
    this.url = String(url);
    this.readyState = 0;
    this.onopen = null;
    this.onmessage = null;
    this.onerror = null;
    this._abort = new AbortController();
    this._run();
  }

  async _run() {
    let response;
    try {
      response = await fetch(this.url, {
        headers: { Accept: 'text/event-stream' },
        signal: this._abort.signal,
      });
    } catch (err) {
      this._fail(err);
      return;
    }
    const type = response.headers.get('content-type') || '';
    if (!response.ok || !type.startsWith('text/event-stream')) {
      this._fail(new Error(`status ${response.status}, content-type ${type}`));
      return;
    }
    this.readyState = 1;
    if (this.onopen) this.onopen({ type: 'open' });
    const decoder = new TextDecoder();
    let buffer = '';
    let data = [];
    try {
      for await (const chunk of response.body) {
        buffer += decoder.decode(chunk, { stream: true });
        let match;
        while ((match = /\r\n|\r|\n/.exec(buffer)) !== null) {
          // A CR at the very end may be the first half of a CRLF split across chunks.
          if (match[0] === '\r' && match.index === buffer.length - 1) break;
          const line = buffer.slice(0, match.index);
          buffer = buffer.slice(match.index + match[0].length);
          if (line === '') {
            if (data.length > 0 && this.readyState === 1 && this.onmessage) {
              this.onmessage({ type: 'message', data: data.join('\n') });
            }
            data = [];
          } else if (!line.startsWith(':')) {
            const colon = line.indexOf(':');
            const field = colon === -1 ? line : line.slice(0, colon);
            let value = colon === -1 ? '' : line.slice(colon + 1);
            if (value.startsWith(' ')) value = value.slice(1);
            if (field === 'data') data.push(value);
          }
        }
      }
    } catch (err) {
      this._fail(err);
      return;
    }
    this._fail(new Error('stream ended'));
  }

  _fail(err) {
    if (this.readyState === 2) return;
    this.readyState = 2;
    if (this.onerror) this.onerror({ type: 'error', error: err });
  }

  close() {
    this.readyState = 2;
    this._abort.abort();
  }
}

module.exports = { MinimalEventSource };
