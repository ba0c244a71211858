// Loaded with `node --require` before a peer that binds every interface (e.g.
// server-everything's `app.listen(PORT)`): forces TCP listeners onto 127.0.0.1 so test
// peers are never reachable from the network. Unix sockets and handles pass through.
'use strict';

const net = require('node:net');

const LOOPBACK = '127.0.0.1';
const originalListen = net.Server.prototype.listen;

function isPort(value) {
  return typeof value === 'number' || (typeof value === 'string' && /^\d+$/.test(value));
}

net.Server.prototype.listen = function listenOnLoopback(...args) {
  const [first] = args;
  if (isPort(first)) {
    // listen(port[, host][, backlog][, callback])
    if (typeof args[1] === 'string' || args[1] === undefined || args[1] === null) {
      args[1] = LOOPBACK;
    } else {
      args.splice(1, 0, LOOPBACK);
    }
  } else if (first && typeof first === 'object' && !first._handle && !first.fd
             && (first.port !== undefined || first.path === undefined)) {
    // listen(options[, callback]) with a TCP port
    args[0] = { ...first, host: LOOPBACK };
  } else if (first === undefined || typeof first === 'function') {
    // listen() or listen(callback): a random port, on loopback
    args.unshift(0, LOOPBACK);
  }
  return originalListen.apply(this, args);
};
