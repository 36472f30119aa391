// JavaScript runner of a sandbox container, started by supervisor.py while the container is idle.
//
// fd 3: the run, written by the supervisor once it has arrived: length-prefixed UTF-8 fields
//       (entry, then the arguments), then end of file.
// fd 4: written once, when this interpreter is ready, then closed.
//
// The program then runs in this process exactly as `node <entry> <args...>` would run it: same
// process.argv, same main-module loading (CommonJS or ES module), stdin, stdout and stderr
// inherited from the container.
'use strict';

const fs = require('fs');
const path = require('path');
const Module = require('module');

const GO_FD = 3;
const READY_FD = 4;

function readAll(fd) {
  const chunks = [];
  const buffer = Buffer.alloc(65536);
  for (;;) {
    let n;
    try {
      n = fs.readSync(fd, buffer, 0, buffer.length, null);
    } catch (error) {
      if (error.code === 'EAGAIN' || error.code === 'EINTR') continue;
      throw error;
    }
    if (n === 0) return Buffer.concat(chunks);
    chunks.push(Buffer.from(buffer.subarray(0, n)));
  }
}

function decode(data) {
  const fields = [];
  let at = 0;
  while (at < data.length) {
    const n = data.readUInt32BE(at);
    at += 4;
    fields.push(data.toString('utf8', at, at + n));
    at += n;
  }
  return fields;
}

// Created on first use, which loads the stream modules: done while idle. (Not stdin: a stdin
// stream could start reading fd 0, which still holds the supervisor's header.)
void process.stdout;
void process.stderr;

fs.writeSync(READY_FD, 'r');
fs.closeSync(READY_FD);
const run = decode(readAll(GO_FD));
fs.closeSync(GO_FD);
if (run.length === 0) process.exit(0);
const [entry, ...args] = run;
process.argv = [process.argv[0], path.resolve('/work', entry), ...args];
Module.runMain();
