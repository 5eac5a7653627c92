#!/usr/bin/env node
// An independent OCPP 2.0.1 CSMS for cpagent's interop test: the ocpp-rpc server in strict
// mode, which validates every CALL and every CALLRESULT, both ways, against the OCPP 2.0.1
// JSON schemas that ship with ocpp-rpc. Nothing here is shared with cpagent's own code.
//
//   node server.js [--port N] [--interval S]
//
// It listens on 127.0.0.1 (port N, default 0 = any free one), accepts a WebSocket only when
// the charging station offers the subprotocol ocpp2.0.1, and answers the station's
// BootNotification (Accepted, heartbeat interval S, default 300), Heartbeat,
// StatusNotification, Authorize (Accepted), TransactionEvent ({} or, when it carries an
// idToken, idTokenInfo Accepted), MeterValues, NotifyReport and SecurityEventNotification;
// any other action gets ocpp-rpc's NotImplemented CALLERROR.
//
// Standard output is one JSON object per line, each with an "event":
//   listening        {host, port, node, ocppRpc}        once, first (ocppRpc: its version)
//   upgrade_rejected {identity, offered, reason}        a handshake refused (no ocpp2.0.1)
//   connected        {identity, protocol, offered}
//   message          {direction, type, id, action, payload}          every frame on the wire
//                    (direction "in" = station to CSMS, "out" = CSMS to station; type CALL,
//                    CALLRESULT or CALLERROR; for a CALLERROR also errorCode,
//                    errorDescription, errorDetails; action is the CALL's, for answers too)
//   validation_error {direction, action, id, isCall, errorCode, error, errors}
//                    what strict mode refused: an invalid CALL from the station (answered
//                    with a CALLERROR), an invalid answer from the station (the call fails),
//                    or an invalid message of this CSMS (a CALL not sent, an answer replaced
//                    by an InternalError CALLERROR)
//   bad_message      {error, errorCode, frame}          a frame ocpp-rpc could not take
//   handler_error    {action, error}                    a CALL this CSMS could not answer
//   disconnected     {identity, code, reason}
//   reply            {call, tag, result}                answer to a command from stdin
//   reply_error      {call, tag, errorCode, error, details}
//   command_error    {error, line}                      a stdin line that is no command
//
// Standard input takes commands, one JSON object per line:
//   {"call": "GetVariables", "params": {...}, "tag": "any"}
// sends that CALL to the (last) connected station; the outcome is printed as reply or
// reply_error with the same tag. When standard input ends, the server closes and exits,
// so it never outlives the process that started it.

'use strict';

const readline = require('node:readline');
const { RPCServer } = require('ocpp-rpc');

const PROTOCOL = 'ocpp2.0.1';

function parseArgs(argv) {
    const opts = { port: 0, interval: 300 };
    for (let i = 0; i < argv.length; i += 1) {
        const arg = argv[i];
        const value = argv[i + 1];
        if ((arg === '--port' || arg === '--interval') && value !== undefined) {
            const n = Number(value);
            if (!Number.isInteger(n) || n < 0) {
                throw new Error(`${arg} needs a non-negative integer, got ${JSON.stringify(value)}`);
            }
            opts[arg.slice(2)] = n;
            i += 1;
        } else {
            throw new Error(`unknown argument ${JSON.stringify(arg)}; usage: server.js [--port N] [--interval S]`);
        }
    }
    return opts;
}

function emit(event, fields) {
    process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

function errorFields(err) {
    return {
        errorCode: err?.rpcErrorCode ?? err?.name ?? 'Error',
        error: String(err?.message ?? err),
        details: err?.details ?? {},
    };
}

// Answers to the station's CALLs, by action.
function handlers(interval) {
    const now = () => new Date().toISOString();
    return {
        BootNotification: () => ({ currentTime: now(), interval, status: 'Accepted' }),
        Heartbeat: () => ({ currentTime: now() }),
        StatusNotification: () => ({}),
        Authorize: () => ({ idTokenInfo: { status: 'Accepted' } }),
        TransactionEvent: ({ params }) => (params.idToken ? { idTokenInfo: { status: 'Accepted' } } : {}),
        MeterValues: () => ({}),
        NotifyReport: () => ({}),
        SecurityEventNotification: () => ({}),
    };
}

// Logs every frame on the wire, naming the action of answers from the CALL they answer.
function watchFrames(client) {
    const actions = { in: new Map(), out: new Map() }; // CALLs by id, keyed by their sender
    client.on('message', ({ message, outbound }) => {
        const direction = outbound ? 'out' : 'in';
        const caller = outbound ? 'in' : 'out'; // an answer travels against its CALL
        let frame;
        try {
            frame = JSON.parse(message);
        } catch (err) {
            emit('message', { direction, type: 'UNPARSABLE', raw: message });
            return;
        }
        if (!Array.isArray(frame)) {
            emit('message', { direction, type: 'UNKNOWN', raw: message });
            return;
        }
        const [kind, id] = frame;
        if (kind === 2) {
            actions[direction].set(id, frame[2]);
            emit('message', { direction, type: 'CALL', id, action: frame[2], payload: frame[3] });
        } else if (kind === 3) {
            const action = actions[caller].get(id) ?? null;
            actions[caller].delete(id);
            emit('message', { direction, type: 'CALLRESULT', id, action, payload: frame[2] });
        } else if (kind === 4) {
            const action = actions[caller].get(id) ?? null;
            actions[caller].delete(id);
            emit('message', {
                direction, type: 'CALLERROR', id, action,
                errorCode: frame[2], errorDescription: frame[3], errorDetails: frame[4],
            });
        } else {
            emit('message', { direction, type: 'UNKNOWN', raw: message });
        }
    });
    client.on('strictValidationFailure', (f) => {
        emit('validation_error', {
            direction: f.outbound ? 'out' : 'in',
            action: f.method,
            id: f.messageId,
            isCall: f.isCall,
            errorCode: f.error?.rpcErrorCode ?? null,
            error: String(f.error?.message ?? f.error),
            errors: f.error?.details?.errors ?? [],
        });
    });
    client.on('badMessage', ({ buffer, error }) => {
        emit('bad_message', {
            frame: buffer.toString('utf8'),
            errorCode: error?.rpcErrorCode ?? null,
            error: String(error?.message ?? error),
        });
    });
}

async function main() {
    const opts = parseArgs(process.argv.slice(2));
    const server = new RPCServer({
        protocols: [PROTOCOL],
        strictMode: true,
        respondWithDetailedErrors: true,
    });
    let station = null;

    server.auth((accept, reject, handshake) => {
        const offered = [...handshake.protocols];
        if (!handshake.protocols.has(PROTOCOL)) {
            emit('upgrade_rejected', { identity: handshake.identity, offered, reason: `no ${PROTOCOL}` });
            reject(400, `subprotocol ${PROTOCOL} required`);
            return;
        }
        accept({ offered }, PROTOCOL);
    });

    server.on('client', (client) => {
        station = client;
        emit('connected', {
            identity: client.identity,
            protocol: client.protocol,
            offered: client.session.offered,
        });
        watchFrames(client);
        for (const [action, answer] of Object.entries(handlers(opts.interval))) {
            client.handle(action, async (call) => {
                try {
                    return answer(call);
                } catch (err) {
                    emit('handler_error', { action, error: String(err?.message ?? err) });
                    throw err;
                }
            });
        }
        client.once('close', ({ code, reason }) => {
            if (station === client) station = null;
            emit('disconnected', { identity: client.identity, code, reason: String(reason ?? '') });
        });
    });

    const http = await server.listen(opts.port, '127.0.0.1');
    emit('listening', {
        host: '127.0.0.1',
        port: http.address().port,
        node: process.version,
        ocppRpc: require('ocpp-rpc/package.json').version,
    });

    const send = async (line) => {
        let command;
        try {
            command = JSON.parse(line);
            if (typeof command?.call !== 'string') throw new Error('a command needs "call": "<Action>"');
        } catch (err) {
            emit('command_error', { error: String(err.message), line });
            return;
        }
        const { call, params = {}, tag = null } = command;
        try {
            if (station === null) throw new Error('no station is connected');
            const result = await station.call(call, params);
            emit('reply', { call, tag, result });
        } catch (err) {
            emit('reply_error', { call, tag, ...errorFields(err) });
        }
    };

    let closing = false;
    const shutdown = async () => {
        if (closing) return;
        closing = true;
        await server.close({ code: 1001, reason: 'CSMS stopping', force: true });
        http.close();
        process.exit(0);
    };
    const input = readline.createInterface({ input: process.stdin });
    input.on('line', (line) => {
        if (line.trim()) send(line);
    });
    input.on('close', shutdown);
    process.on('SIGTERM', shutdown);
    process.on('SIGINT', shutdown);
}

main().catch((err) => {
    process.stderr.write(`server.js: ${err?.message ?? err}\n`);
    process.exit(2);
});
