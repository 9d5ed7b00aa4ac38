// The live orders dashboard: the newest orders over REST, then every change from the `orders`
// channel (captured rows, whoever wrote them: this page, another user, a SQL script). A row
// that changes flashes. A status filter ("pending orders") is a shape (docs/topics/shapes.md):
// the server sends the matching rows and then exactly the rows entering, changing and leaving.

import { request } from '../api.js';
import { field, flash, fullTime, h, replace, shortTime } from '../dom.js';
import * as realtime from '../realtime.js';
import { busy, confirm, toast } from '../ui.js';

const STATUSES = ['pending', 'shipped', 'delivered'];
const LIMIT = 100;

export class OrdersView {
  constructor(root) {
    this.root = root;
    /** @type {Map<number, object>} */
    this.orders = new Map();
    this.rows = new Map(); // id → <tr>
    this.total = 0;
    this.filter = '';
    this.build();
    this.unwatch = realtime.watch('orders', {
      publication: (pub) => this.onPublication(pub.data),
      subscribed: (ctx) => {
        // A gap the channel could not replay: the table is reloaded.
        if (ctx.gap) this.load();
      },
    });
    this.load();
  }

  destroy() {
    this.destroyed = true;
    this.unwatch();
    this.closeShape();
  }

  /** Shows the orders of one status through a live shape (falls back to REST without one). */
  async useShape() {
    this.closeShape();
    const shape = realtime.shape('orders', { where: `status = '${this.filter}'` });
    if (!shape) {
      this.load();
      return;
    }
    this.shape = shape;
    shape.on('change', () => this.fromShape(shape));
    shape.on('error', (err) => toast(`The live filter stopped: ${err.message}`, 'error'));
    try {
      await shape.open();
    } catch (err) {
      if (this.shape !== shape) return;
      this.closeShape();
      toast(`Live filter unavailable (${err.message}); showing a snapshot`, 'error');
      this.load();
    }
  }

  closeShape() {
    this.shape?.close();
    this.shape = null;
  }

  fromShape(shape) {
    if (this.shape !== shape || this.destroyed) return;
    const all = [...shape.rows.values()].sort((a, b) => b.id - a.id);
    const shown = new Map(all.slice(0, LIMIT).map((o) => [Number(o.id), o]));
    for (const id of [...this.orders.keys()]) if (!shown.has(id)) this.removeOrder(id, { count: false });
    for (const order of shown.values()) this.upsert(order, { flashIt: this.loadedShape === shape });
    this.loadedShape = shape;
    this.total = all.length;
    this.render();
  }

  build() {
    const form = h(
      'form',
      { class: 'order-form', 'aria-label': 'New order', 'data-testid': 'order-form' },
      field({ label: 'Customer', id: 'order-customer', required: true, maxlength: 100, autocomplete: 'off', 'data-testid': 'order-customer' }),
      field({ label: 'Product', id: 'order-product', required: true, maxlength: 100, autocomplete: 'off', 'data-testid': 'order-product' }),
      h(
        'div',
        { class: 'field' },
        h('label', { for: 'order-status' }, 'Status'),
        h('select', { id: 'order-status', 'data-testid': 'order-status' }, STATUSES.map((s) => h('option', { value: s }, label(s)))),
      ),
      h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'order-create' }, 'Add order'),
    );
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const customer = form.querySelector('#order-customer');
      const product = form.querySelector('#order-product');
      const body = {
        customer_name: customer.value.trim(),
        product_name: product.value.trim(),
        status: form.querySelector('#order-status').value,
      };
      if (!body.customer_name || !body.product_name) {
        (body.customer_name ? product : customer).focus();
        toast('Enter a customer and a product.', 'error');
        return;
      }
      try {
        const order = await busy(form, () => request('POST', '/api/orders', { body }));
        this.upsert(order, { flashIt: true, isNew: true });
        form.reset();
        customer.focus();
      } catch (err) {
        toast(`Not created: ${err.message}`, 'error');
      }
    });

    this.filterSelect = h(
      'select',
      { id: 'orders-filter', 'data-testid': 'orders-filter' },
      h('option', { value: '' }, 'All statuses'),
      STATUSES.map((s) => h('option', { value: s }, label(s))),
    );
    this.filterSelect.addEventListener('change', () => {
      this.filter = this.filterSelect.value;
      if (this.filter) this.useShape();
      else {
        this.closeShape();
        this.load();
      }
    });
    this.summary = h('p', { class: 'orders-summary', role: 'status', 'data-testid': 'orders-summary' });
    this.counts = h('div', { class: 'stat-cards' });
    this.tbody = h('tbody', { 'data-testid': 'orders-body' });
    this.emptyRow = h('tr', { class: 'empty' }, h('td', { colspan: '6' }, 'No orders yet. Add the first one above.'));
    const table = h(
      'table',
      { class: 'orders-table', 'data-testid': 'orders-table' },
      h('caption', { class: 'sr-only' }, 'Orders, newest first; rows update live'),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', { scope: 'col' }, '#'),
          h('th', { scope: 'col' }, 'Customer'),
          h('th', { scope: 'col' }, 'Product'),
          h('th', { scope: 'col' }, 'Status'),
          h('th', { scope: 'col' }, 'Updated'),
          h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')),
        ),
      ),
      this.tbody,
    );
    replace(
      this.root,
      h(
        'section',
        { class: 'orders', 'aria-labelledby': 'orders-title' },
        h(
          'header',
          { class: 'page-head' },
          h('div', {}, h('h1', { id: 'orders-title' }, 'Orders'), h('p', { class: 'muted' }, 'Live: changes from anyone — this page, other users or the database — show up at once.')),
          this.counts,
        ),
        h('div', { class: 'card' }, form),
        h(
          'div',
          { class: 'card table-card' },
          h('div', { class: 'table-toolbar' }, this.summary, h('div', { class: 'field field-inline' }, h('label', { for: 'orders-filter' }, 'Show'), this.filterSelect)),
          h('div', { class: 'table-scroll' }, table),
        ),
      ),
    );
  }

  async load() {
    if (this.shape) return; // the shape keeps the filtered rows
    const query = { limit: LIMIT, offset: 0 };
    if (this.filter) query.status = this.filter;
    try {
      const result = await request('GET', '/api/orders', { query });
      if (this.destroyed) return;
      this.orders = new Map(result.orders.map((o) => [o.id, o]));
      this.total = result.total;
      for (const tr of this.rows.values()) tr.remove();
      this.rows.clear();
      this.render();
    } catch (err) {
      toast(`Cannot load the orders: ${err.message}`, 'error');
    }
  }

  onPublication(data) {
    if (!data || data.table !== 'orders' || this.shape) return;
    if (data.op === 'insert' || data.op === 'update') {
      this.upsert(data.row, { flashIt: true, isNew: data.op === 'insert' });
    } else if (data.op === 'delete' && data.old) {
      this.removeOrder(Number(data.old.id));
    } else if (data.op === 'truncate') {
      this.load();
    }
  }

  upsert(order, { flashIt = false, isNew = false } = {}) {
    const id = Number(order.id);
    const prev = this.orders.get(id);
    if (prev && prev.updated_at && order.updated_at && Date.parse(order.updated_at) < Date.parse(prev.updated_at)) {
      return; // an older version (a REST reply overtaken by the live row)
    }
    const matches = !this.filter || order.status === this.filter;
    if (!matches) {
      if (prev) this.removeOrder(id, { count: false });
      return;
    }
    if (!prev && isNew) this.total++;
    const same = prev && JSON.stringify({ ...prev, ...order }) === JSON.stringify(prev);
    this.orders.set(id, { ...prev, ...order, id });
    this.render();
    if (flashIt && !same) {
      const tr = this.rows.get(id);
      if (tr) flash(tr, prev ? 'flash' : 'flash-new');
    }
  }

  removeOrder(id, { count = true } = {}) {
    if (!this.orders.delete(id)) return;
    if (count) this.total = Math.max(0, this.total - 1);
    const tr = this.rows.get(id);
    this.rows.delete(id);
    if (tr) {
      tr.classList.add('leaving');
      setTimeout(() => tr.remove(), 400);
    }
    this.render();
  }

  render() {
    const sorted = [...this.orders.values()].sort((a, b) => b.id - a.id);
    let previous = null;
    for (const order of sorted) {
      const sig = JSON.stringify(order);
      let tr = this.rows.get(order.id);
      if (!tr || tr.dataset.sig !== sig) {
        const fresh = this.row(order);
        fresh.dataset.sig = sig;
        if (tr) {
          fresh.className = tr.className; // keep a running flash
          tr.replaceWith(fresh);
        }
        tr = fresh;
        this.rows.set(order.id, tr);
      }
      const expected = previous ? previous.nextSibling : this.tbody.firstChild;
      if (tr !== expected) this.tbody.insertBefore(tr, expected);
      previous = tr;
    }
    if (!sorted.length) this.tbody.append(this.emptyRow);
    else this.emptyRow.remove();
    const shown = sorted.length;
    this.summary.textContent = `${shown} shown of ${Math.max(this.total, shown)} order${this.total === 1 ? '' : 's'}`;
    const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
    for (const o of sorted) if (o.status in counts) counts[o.status]++;
    replace(
      this.counts,
      STATUSES.map((s) => h('div', { class: `stat stat-${s}` }, h('span', { class: 'stat-value' }, String(counts[s])), h('span', { class: 'stat-label' }, label(s)))),
    );
  }

  row(order) {
    const select = h(
      'select',
      { 'aria-label': `Status of order ${order.id}`, 'data-testid': 'order-row-status', class: `status-select status-${order.status}` },
      STATUSES.map((s) => h('option', { value: s, selected: s === order.status }, label(s))),
    );
    select.addEventListener('change', async () => {
      select.disabled = true;
      try {
        const updated = await request('PATCH', `/api/orders/${order.id}`, { body: { status: select.value } });
        this.upsert(updated, { flashIt: true });
      } catch (err) {
        toast(`Not changed: ${err.message}`, 'error');
        select.value = order.status;
      } finally {
        select.disabled = false;
      }
    });
    const remove = h('button', {
      type: 'button',
      class: 'btn btn-sm btn-ghost danger-text',
      'aria-label': `Delete order ${order.id}`,
      'data-testid': 'order-delete',
      onclick: async () => {
        if (!(await confirm('Delete order?', `Order #${order.id} for ${order.customer_name} will be deleted.`, 'Delete', { danger: true }))) return;
        try {
          await request('DELETE', `/api/orders/${order.id}`);
          this.removeOrder(order.id);
        } catch (err) {
          if (err.status === 404) this.removeOrder(order.id);
          else toast(`Not deleted: ${err.message}`, 'error');
        }
      },
    }, 'Delete');
    return h(
      'tr',
      { 'data-testid': 'order-row', 'data-id': order.id, 'data-status': order.status },
      h('td', { class: 'num cell-id' }, String(order.id)),
      h('td', { class: 'cell-customer', 'data-testid': 'order-customer-cell' }, order.customer_name),
      h('td', { class: 'cell-product' }, order.product_name),
      h('td', { class: 'cell-status' }, select),
      h('td', { class: 'cell-updated' }, h('time', { datetime: order.updated_at, title: fullTime(order.updated_at) }, shortTime(order.updated_at))),
      h('td', { class: 'actions' }, remove),
    );
  }
}

function label(status) {
  return status[0].toUpperCase() + status.slice(1);
}
