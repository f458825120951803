// Preloaded (`node --require`) into the original Node.js hub when
// scripts/bench runs it for comparison. That hub listens on all interfaces
// and has no setting to change it; a benchmark must expose nothing beyond
// this machine, so every listen() that names no host is bound to loopback.
// Nothing else about the hub is changed.
'use strict';
const net = require('net');

const LOOPBACK = '127.0.0.1';
const listen = net.Server.prototype.listen;

net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (first !== null && typeof first === 'object' && !Array.isArray(first)) {
    // listen({port, host, ...}): a path (Unix socket) or a handle has no host.
    if (first.path === undefined && first.handle === undefined && first._handle === undefined) {
      args[0] = { ...first, host: LOOPBACK };
    }
  } else if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    // listen(port[, host][, backlog][, callback]): insert or replace the host.
    if (typeof args[1] === 'string') {
      args[1] = LOOPBACK;
    } else {
      args.splice(1, 0, LOOPBACK);
    }
  } else if (first === undefined || typeof first === 'function') {
    // listen() or listen(callback): an ephemeral port on loopback.
    args.unshift(0, LOOPBACK);
  }
  return listen.apply(this, args);
};
