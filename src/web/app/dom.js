// DOM and formatting helpers shared by every view. Every user-supplied string reaches the DOM
// through textContent or text nodes only: `h` never parses HTML.

export const $ = (id) => document.getElementById(id);

/** An element with attributes (`class`, `text`, `dataset` are special) and children. */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

export function hashHue(text) {
  let hash = 0;
  for (const ch of String(text)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % 360;
}

function initials(name) {
  const parts = String(name).split(/[._-]+/).filter(Boolean);
  const first = [...(parts[0] ?? '?')][0] ?? '?';
  const second = parts.length > 1 ? [...parts[1]][0] : '';
  return (first + second).toUpperCase();
}

export function paintAvatar(node, name) {
  node.textContent = initials(name);
  node.style.setProperty('--hue', hashHue(name));
}

export function avatar(name, extraClass = '') {
  const node = h('span', { class: `avatar ${extraClass}`.trim(), 'aria-hidden': 'true' });
  paintAvatar(node, name);
  return node;
}

export const timeFmt = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
export const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric' });
const dayYearFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'long', day: 'numeric' });

export function toDate(ts) {
  const d = new Date(typeof ts === 'number' || /^\d+$/.test(String(ts)) ? Number(ts) : ts);
  return Number.isNaN(d.getTime()) ? new Date() : d;
}

export function dayKey(ts) {
  const d = toDate(ts);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

export function dayLabel(ts) {
  const d = toDate(ts);
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (dayKey(d) === dayKey(today)) return 'Today';
  if (dayKey(d) === dayKey(yesterday)) return 'Yesterday';
  return d.getFullYear() === today.getFullYear() ? dayFmt.format(d) : dayYearFmt.format(d);
}

export function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

/** Text with http(s) links made clickable, built from text nodes and anchors only. */
export function richText(text) {
  const frag = document.createDocumentFragment();
  const re = /\bhttps?:\/\/[^\s<>"']+/gi;
  let last = 0;
  for (const match of text.matchAll(re)) {
    let url = match[0];
    const trail = url.match(/[.,!?;:)\]}]+$/);
    if (trail) url = url.slice(0, -trail[0].length);
    if (match.index > last) frag.append(text.slice(last, match.index));
    frag.append(h('a', { href: url, target: '_blank', rel: 'noopener noreferrer nofollow', text: url }));
    last = match.index + url.length;
  }
  if (last < text.length) frag.append(text.slice(last));
  return frag;
}
