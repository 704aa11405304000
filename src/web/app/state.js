// The page's one state object and its element handles, shared by the views. Views change
// `state` and re-render their own part of the page; nothing else holds app state.
import { $ } from './dom.js';

export const ROOM_RE = /^[a-z0-9_-]{1,64}$/;
/** Messages per history page (join ack and "load earlier"). */
export const PAGE_SIZE = 50;

export const ui = {
  app: $('app'),
  loadingView: $('loading-view'),
  authView: $('auth-view'),
  authForm: $('auth-form'),
  username: $('username'),
  password: $('password'),
  remember: $('remember'),
  authError: $('auth-error'),
  chatView: $('chat-view'),
  account: $('account'),
  accountAvatar: $('account-avatar'),
  accountName: $('account-name'),
  logoutBtn: $('logout-btn'),
  status: $('status'),
  statusText: $('status-text'),
  instanceId: $('instance-id'),
  banner: $('banner'),
  bannerText: $('banner-text'),
  bannerRetry: $('banner-retry'),
  joinForm: $('join-form'),
  roomInput: $('room-input'),
  joinError: $('join-error'),
  joinedList: $('joined-list'),
  joinedEmpty: $('joined-empty'),
  roomList: $('room-list'),
  roomsEmpty: $('rooms-empty'),
  noRoom: $('no-room'),
  roomHeader: $('room-header'),
  roomTitle: $('room-title'),
  roomMembers: $('room-members'),
  backBtn: $('back-btn'),
  leaveBtn: $('leave-btn'),
  scroller: $('scroller'),
  historyTop: $('history-top'),
  messages: $('messages'),
  jumpBtn: $('jump-btn'),
  typing: $('typing'),
  composer: $('composer'),
  messageInput: $('message-input'),
  privacy: $('privacy'),
  privacySlotAuth: $('privacy-slot-auth'),
  privacySlotChat: $('privacy-slot-chat'),
  analyticsSwitch: $('analytics-switch'),
  analyticsNote: $('analytics-note'),
  toasts: $('toasts'),
};

export const state = {
  me: null,
  socket: null,
  // Exactly-once, in-order message delivery per room across reconnects (see room_stream.js).
  stream: null,
  // Rooms the current connection's handshake asked to resume.
  resumed: new Set(),
  everConnected: false,
  connection: 'idle', // idle | connecting | connected | reconnecting | draining | offline
  reconnectAttempt: 0,
  rooms: new Map(), // joined (or joining) rooms by name
  active: null,
  directory: [],
  roomsTimer: null,
  typingTimer: null,
  bannerTimer: null,
  authBusy: false,
};
