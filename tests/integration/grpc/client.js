#!/usr/bin/env node
// A small gRPC client for the integration tests, driven from Python.
//
//   node client.js check ADDR SERVICE
//       grpc.health.v1.Health/Check. Prints {"status": "SERVING"} and exits 0,
//       or prints the error and exits 1.
//   node client.js watch ADDR SERVICE
//       grpc.health.v1.Health/Watch. Prints one JSON line per message
//       ({"status": "NOT_SERVING"}). When the stream ends it prints
//       {"end": {...}} with the final status and exits 0 for OK, 1 otherwise.
//       On SIGTERM or SIGINT it cancels the call and exits 0.
//   node client.js call ADDR METHOD JSON [-H key:value]...
//       A unary call by full method path (e.g. /znp.v1.System/Ping) with the
//       request message given as JSON. Prints the response message as one
//       JSON line and exits 0, or prints {"error": {...}} and exits 1.
//       -H adds request metadata, e.g. -H "authorization:Bearer TOKEN".
//       A METHOD missing from spec/proto is called with an empty message
//       (to check that the server returns UNIMPLEMENTED).
//
// Errors are printed as {"error": {"code": 5, "name": "NOT_FOUND",
// "message": "...", "znp_error": {...}}} on stdout and "NAME: message" on
// stderr. znp_error is the error envelope from the "znp-error-bin" trailing
// metadata when the server sent one, and retry_after the "retry-after"
// trailing metadata (seconds, as a string) when present. The protos come from spec/proto; int64
// fields print as JSON numbers, enums as their names.
"use strict";

const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO_ROOT = path.resolve(__dirname, "..", "..", "..", "spec", "proto");
const PROTO_FILES = ["grpc/health/v1/health.proto", "znp/v1/znp.proto", "znp/kernel/v1/kernel.proto"];
const DEADLINE_MS = 10000;
const HEALTH_SERVICE = "grpc.health.v1.Health";

function usage() {
  process.stderr.write(
    "usage: node client.js check ADDR SERVICE\n" +
      "       node client.js watch ADDR SERVICE\n" +
      "       node client.js call ADDR METHOD JSON [-H key:value]...\n",
  );
  process.exit(2);
}

function loadDefinitions() {
  return protoLoader.loadSync(PROTO_FILES, {
    includeDirs: [PROTO_ROOT],
    keepCase: true, // proto field names are the JSON keys of the REST API
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
}

// Find the method definition whose path is `methodPath` ("/pkg.Service/Method").
function findMethod(definitions, methodPath) {
  for (const name of Object.keys(definitions)) {
    const service = definitions[name];
    if (typeof service !== "object" || service === null || service.format !== undefined) continue;
    for (const methodName of Object.keys(service)) {
      if (service[methodName] && service[methodName].path === methodPath) return service[methodName];
    }
  }
  return null;
}

function statusName(code) {
  for (const [name, value] of Object.entries(grpc.status)) {
    if (value === code) return name;
  }
  return String(code);
}

function describeStatus(status) {
  const out = { code: status.code, name: statusName(status.code), message: status.details || "" };
  const retryAfter = status.metadata ? status.metadata.get("retry-after") : [];
  if (retryAfter.length > 0) out.retry_after = String(retryAfter[0]);
  const values = status.metadata ? status.metadata.get("znp-error-bin") : [];
  if (values.length > 0) {
    const text = Buffer.isBuffer(values[0]) ? values[0].toString("utf8") : String(values[0]);
    try {
      out.znp_error = JSON.parse(text);
    } catch (err) {
      out.znp_error_raw = text;
    }
  }
  return out;
}

function printError(status) {
  const described = describeStatus(status);
  process.stdout.write(JSON.stringify({ error: described }) + "\n");
  process.stderr.write(described.name + ": " + described.message + "\n");
}

function makeClient(addr) {
  return new grpc.Client(addr, grpc.credentials.createInsecure());
}

function deadline() {
  return new Date(Date.now() + DEADLINE_MS);
}

function unary(addr, method, request, metadata) {
  const client = makeClient(addr);
  client.makeUnaryRequest(
    method.path,
    method.requestSerialize,
    method.responseDeserialize,
    request,
    metadata,
    { deadline: deadline() },
    (err, response) => {
      client.close();
      if (err) {
        printError(err);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(JSON.stringify(response) + "\n");
    },
  );
}

function watch(addr, method, request) {
  const client = makeClient(addr);
  const call = client.makeServerStreamRequest(
    method.path,
    method.requestSerialize,
    method.responseDeserialize,
    request,
    new grpc.Metadata(),
    {},
  );
  let stopping = false;
  const stop = () => {
    stopping = true;
    call.cancel();
    client.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);

  call.on("data", (message) => process.stdout.write(JSON.stringify(message) + "\n"));
  // "error" carries the final status for anything but OK, "status" for every end
  call.on("error", () => {});
  call.on("status", (status) => {
    if (stopping) return;
    process.stdout.write(JSON.stringify({ end: describeStatus(status) }) + "\n");
    if (status.code !== grpc.status.OK) process.stderr.write(statusName(status.code) + ": " + status.details + "\n");
    client.close();
    process.exit(status.code === grpc.status.OK ? 0 : 1);
  });
}

function parseMetadata(args) {
  const metadata = new grpc.Metadata();
  for (let i = 0; i < args.length; i++) {
    if (args[i] !== "-H" || i + 1 >= args.length) usage();
    const header = args[++i];
    const colon = header.indexOf(":");
    if (colon <= 0) usage();
    metadata.add(header.slice(0, colon).trim().toLowerCase(), header.slice(colon + 1).trim());
  }
  return metadata;
}

function main(argv) {
  const [command, addr, target, ...rest] = argv;
  if (!command || !addr || target === undefined) usage();
  const definitions = loadDefinitions();

  if (command === "check" || command === "watch") {
    if (rest.length !== 0) usage();
    const method = definitions[HEALTH_SERVICE][command === "check" ? "Check" : "Watch"];
    if (command === "check") unary(addr, method, { service: target }, new grpc.Metadata());
    else watch(addr, method, { service: target });
    return;
  }

  if (command === "call") {
    if (rest.length < 1) usage();
    let method = findMethod(definitions, target);
    if (method === null) {
      // not in spec/proto: send an empty message, e.g. to see UNIMPLEMENTED
      method = {
        path: target,
        requestSerialize: () => Buffer.alloc(0),
        responseDeserialize: (bytes) => ({ raw_length: bytes.length }),
      };
    }
    let request;
    try {
      request = JSON.parse(rest[0]);
    } catch (err) {
      process.stderr.write("invalid request JSON: " + err.message + "\n");
      process.exit(2);
    }
    unary(addr, method, request, parseMetadata(rest.slice(1)));
    return;
  }

  usage();
}

main(process.argv.slice(2));
