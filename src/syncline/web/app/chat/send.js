// Sending a message: over the live connection (the chat.send RPC) while it is up, else REST.
// The RPC is the cheaper path on the server (docs/benchmarks.md, issue 19: it holds 1.5x the
// rate of a plain Node server's POST at p99 <= 50 ms, Syncline's own POST 0.6x), and both
// paths are idempotent by client_msg_id, so a send the socket lost mid-way is simply repeated
// over REST.

import { ApiError, request } from '../api.js';
import * as realtime from '../realtime.js';

let rpcAvailable = true; // false once the server answers 108 (no chat.send there)

/** A refusal the REST path would give too: surface it, do not retry it elsewhere. */
function refusal(err) {
  const code = err?.code;
  return Number.isInteger(code) && code >= 400 && code < 500 && code !== 408 && code !== 429;
}

/** The stored message (201/200 body of the REST route, chat.send's result). */
export async function sendMessage(roomId, body, clientMsgId) {
  if (rpcAvailable && realtime.getStatus() === 'connected') {
    try {
      return await realtime.rpc('chat.send', { room_id: roomId, body, client_msg_id: clientMsgId });
    } catch (err) {
      if (refusal(err)) {
        // The RPC error's message is "<REST error code>: <message>", as REST's body has them.
        const text = String(err.message ?? '');
        const cut = text.indexOf(': ');
        const [code, message] = cut > 0 ? [text.slice(0, cut), text.slice(cut + 2)] : ['rpc', text];
        throw new ApiError(err.code, code, message);
      }
      if (err?.code === 108) rpcAvailable = false;
      // Disconnected, timed out, rate limited, unavailable: the same send over REST.
    }
  }
  return request('POST', `/api/rooms/${roomId}/messages`, {
    body: { body, client_msg_id: clientMsgId },
  });
}
