// The Node REST peer of `syncline bench chat --peer`: POST is ../shared/peers/node/rest-server.js's
// handler unchanged (node:http + pg pool, HS256 JWT, membership checked, one INSERT … RETURNING);
// GET adds a page of history the same way (membership checked, the SELECT Syncline's history makes).
const http = require('node:http');
const crypto = require('node:crypto');
const { Pool } = require(process.env.PEERS_NODE_MODULES ? process.env.PEERS_NODE_MODULES + '/pg' : 'pg');
const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 20 });
const secret = process.env.JWT_SECRET;
const COLUMNS = 'id, room_id, user_id, body, client_msg_id, created_at, edited_at, deleted_at';
function verify(tok) {
  const [h, p, s] = (tok || '').split('.');
  if (!s) return null;
  const sig = crypto.createHmac('sha256', secret).update(h + '.' + p).digest('base64url');
  if (sig !== s) return null;
  const claims = JSON.parse(Buffer.from(p, 'base64url'));
  return claims.exp * 1000 > Date.now() ? claims : null;
}
async function history(res, roomId, claims) {
  const mem = await pool.query('SELECT 1 FROM room_members WHERE room_id = $1 AND user_id = $2', [roomId, claims.sub]);
  if (!mem.rowCount) { res.writeHead(404); return res.end(); }
  const limit = 50;
  const r = await pool.query(`SELECT ${COLUMNS} FROM messages WHERE room_id = $1 ORDER BY id DESC LIMIT $2`, [roomId, limit + 1]);
  const rows = r.rows.slice(0, limit).reverse();
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ messages: rows, has_more: r.rows.length > limit }));
}
http.createServer((req, res) => {
  const m = req.url.match(/^\/api\/rooms\/(\d+)\/messages$/);
  if (!m || (req.method !== 'POST' && req.method !== 'GET')) { res.writeHead(404); return res.end(); }
  const claims = verify((req.headers.authorization || '').slice(7));
  if (!claims) { res.writeHead(401); return res.end(); }
  if (req.method === 'GET') {
    history(res, m[1], claims).catch((e) => { res.writeHead(500); res.end(String(e)); });
    return;
  }
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', async () => {
    try {
      const b = JSON.parse(body);
      const mem = await pool.query('SELECT 1 FROM room_members WHERE room_id = $1 AND user_id = $2', [m[1], claims.sub]);
      if (!mem.rowCount) { res.writeHead(404); return res.end(); }
      const r = await pool.query('INSERT INTO messages (room_id, user_id, body, client_msg_id) VALUES ($1, $2, $3, $4) RETURNING *', [m[1], claims.sub, b.body, b.client_msg_id]);
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify(r.rows[0]));
    } catch (e) { res.writeHead(500); res.end(String(e)); }
  });
}).listen(Number(process.env.PORT), '127.0.0.1');
