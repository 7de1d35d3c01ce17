// Nodemailer's pooled SMTP transport sending COUNT pre-built messages of about SIZE bytes to
// 127.0.0.1:PORT over CONNECTIONS connections. Prints one JSON line: {"sent", "seconds"}.
// Usage: node bench/node/pool.js PORT COUNT CONNECTIONS SIZE (see bench/references.py)
"use strict";
const net = require("net");
const nodemailer = require("nodemailer");

// Nodemailer leaves Nagle's algorithm on; it writes the content and the final dot
// separately, and against smtp-sink on loopback every message then waits for a delayed ACK
// (about 330 msg/s in all). TCP_NODELAY on its sockets gives the pool its real speed, so the
// reference is the faster, stricter one.
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  this.setNoDelay(true);
  return connect.apply(this, args);
};

const [port, count, connections, size] = process.argv.slice(2).map(Number);
const paragraph =
  "Your order has shipped and is on its way. You can follow the parcel with the tracking " +
  "link in your account; delivery usually takes two to three working days.\r\n";
const text = paragraph.repeat(Math.ceil(size / paragraph.length)).slice(0, Math.max(size - 200, 64));
const raw =
  "From: Bench <bench@example.com>\r\nTo: someone@example.com\r\n" +
  "Subject: nodemailer reference\r\nMessage-ID: <reference@example.com>\r\n\r\n" + text;

const transport = nodemailer.createTransport({
  pool: true,
  host: "127.0.0.1",
  port,
  secure: false,
  ignoreTLS: true,
  maxConnections: connections,
  maxMessages: Infinity,
});

async function main() {
  const envelope = { from: "bench@example.com", to: ["someone@example.com"] };
  const started = process.hrtime.bigint();
  let sent = 0;
  const window = connections * 4; // keep the pool busy without queueing every message at once
  let next = 0;
  async function lane() {
    while (next < count) {
      next += 1;
      await transport.sendMail({ envelope, raw });
      sent += 1;
    }
  }
  await Promise.all(Array.from({ length: window }, lane));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  transport.close();
  console.log(JSON.stringify({ sent, seconds }));
}

main().catch((err) => {
  console.error(String(err));
  process.exit(1);
});
