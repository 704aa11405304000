// Toasts: short notes in the corner, for what does not belong to one form.
import { h } from './dom.js';
import { ui } from './state.js';

const MAX_TOASTS = 4;

export function toast(text, { kind = 'info', title = null, timeout = 6000 } = {}) {
  // Repeated identical toasts (e.g. rate limiting) refresh instead of piling up.
  for (const existing of ui.toasts.children) {
    if (existing.dataset.text === text && existing.dataset.kind === kind) {
      existing.restart?.();
      existing.classList.remove('bump');
      void existing.offsetWidth;
      existing.classList.add('bump');
      return existing;
    }
  }
  while (ui.toasts.children.length >= MAX_TOASTS) ui.toasts.firstElementChild.remove();

  const close = h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss' }, h('span', { 'aria-hidden': 'true', text: '×' }));
  const node = h('div', {
    class: `toast toast-${kind}`,
    role: kind === 'error' ? 'alert' : 'status',
    dataset: { text, kind },
  },
  h('span', { class: 'toast-icon', 'aria-hidden': 'true' }),
  h('div', { class: 'toast-body' },
    title ? h('p', { class: 'toast-title', text: title }) : null,
    h('p', { class: 'toast-text', text })),
  close);

  let timer = null;
  const dismiss = () => {
    clearTimeout(timer);
    node.classList.add('leaving');
    setTimeout(() => node.remove(), 180);
  };
  node.restart = () => {
    clearTimeout(timer);
    if (timeout) timer = setTimeout(dismiss, timeout);
  };
  node.addEventListener('mouseenter', () => clearTimeout(timer));
  node.addEventListener('mouseleave', node.restart);
  node.addEventListener('focusin', () => clearTimeout(timer));
  close.addEventListener('click', dismiss);
  ui.toasts.append(node);
  node.restart();
  return node;
}

export const toastError = (text) => toast(text, { kind: 'error', timeout: 7000 });
