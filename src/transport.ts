import http from "node:http";
import { type AuthContext, matchMaker, type Transport } from "@colyseus/core";
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import { services } from "./services.ts";
import { HavenError } from "./protocol/errors.ts";
import { mountUwsHttp, nodeHttpHandler } from "./http/adapters.ts";
import type { Router } from "./http/router.ts";
import type { HavenRoom } from "../rooms/HavenRoom.ts";
import { colyseus } from "./colyseus.ts";

export interface SelectedTransport {
  transport: Transport;
  name: "uws" | "ws";
  /** Serves Haven's HTTP API on the transport's port. */
  mountHttp(router: Router): void;
  /** The port actually bound (useful with PORT=0). */
  boundPort(requested: number): number;
  close(): void;
}

/**
 * A frame larger than this closes the socket at the transport (1009); frames between the
 * message cap (HAVEN_MAX_FRAME_BYTES) and this get a FRAME_TOO_LARGE answer instead.
 */
export const hardFrameLimit = (maxFrameBytes: number) => Math.max(64 * 1024, maxFrameBytes * 4);

/**
 * Every WebSocket upgrade needs a valid access token of the subject the seat is for: the caller
 * who reserved it, or for a reconnection the party that held it (Colyseus skips onAuth there).
 */
async function beforeUpgrade(request: Request, context: AuthContext): Promise<Response | undefined> {
  const deny = (status: number, code: string, message: string) => {
    services().log.info({ status, code, path: new URL(request.url).pathname }, "socket upgrade refused");
    return new Response(JSON.stringify({ code, message }), { status, headers: { "content-type": "application/json" } });
  };
  let sub: string;
  try {
    sub = (await services().tokens.verify(context.token)).sub;
  } catch (error) {
    const e = error instanceof HavenError ? error : new HavenError("TOKEN_INVALID", "the token is not valid");
    return deny(401, e.code, e.message);
  }
  const url = new URL(request.url);
  // Colyseus finds the room by this id in a plain object: "__proto__", "constructor" and the like
  // would name Object's own members, and its join then fails with a TypeError it logs as an error
  const roomId = /\/([A-Za-z0-9_-]+)$/.exec(url.pathname)?.[1];
  if (roomId !== undefined && roomId in Object.prototype) return deny(404, "ROOM_NOT_FOUND", `no room ${roomId}`);
  // a join takes the seat its caller reserved; a reconnect, the seat its party held
  const room = roomId === undefined ? undefined : matchMaker.getLocalRoomById(roomId) as HavenRoom<object> | undefined;
  const holder = room?.subjectOfSession?.(url.searchParams.get("sessionId") ?? "");
  if (holder !== undefined && holder !== sub) return deny(403, "NOT_ENTITLED", "this seat belongs to another party");
  return undefined;
}

async function loadUws(): Promise<{ ok: true } | { ok: false; reason: string }> {
  try {
    await import("uWebSockets.js");
    return { ok: true };
  } catch (error) {
    return { ok: false, reason: (error as Error).message.split("\n")[0] };
  }
}

export async function selectTransport(config: Config, log: Logger): Promise<SelectedTransport> {
  const frameCap = hardFrameLimit(config.limits.maxFrameBytes);
  let useUws = config.transport !== "ws";
  if (useUws) {
    const probe = await loadUws();
    if (!probe.ok) {
      if (config.transport === "uws") {
        throw new Error(`HAVEN_TRANSPORT=uws but uWebSockets.js cannot load here: ${probe.reason}`);
      }
      log.error(
        { reason: probe.reason, glibc: process.report?.getReport ? (process.report.getReport() as any).header?.glibcVersionRuntime : undefined },
        "uWebSockets.js CANNOT LOAD ON THIS MACHINE; FALLING BACK TO THE ws TRANSPORT (slower, more memory per socket). uWS needs glibc >= 2.38.",
      );
      useUws = false;
    }
  }

  if (useUws) {
    const { uWebSocketsTransport } = await import("@colyseus/uwebsockets-transport");
    const uws = (await import("uWebSockets.js")).default;
    const transport = new uWebSocketsTransport({
      maxPayloadLength: frameCap,
      maxBackpressure: config.limits.maxBackpressureBytes,
      // a slow client is closed at the limit and resyncs on reconnect: never a silent gap
      closeOnBackpressureLimit: true,
      idleTimeout: 60,
      sendPingsAutomatically: true,
      beforeUpgrade,
    } as never);
    // uWS listens with SO_REUSEPORT unless told otherwise: two processes on one port would split
    // the traffic between them, and a client's socket could land on a node that does not hold its
    // seat. Haven binds its port exclusively (and on HOST, which the transport would ignore).
    transport.listen = (port: number, hostname?: string, _backlog?: number, listening?: () => void) => {
      const exclusive = (uws as unknown as { LIBUS_LISTEN_EXCLUSIVE_PORT: number }).LIBUS_LISTEN_EXCLUSIVE_PORT;
      // the typings lack the (host, port, options, callback) form the binding has
      (transport.app as unknown as { listen(...a: unknown[]): void }).listen(hostname ?? "0.0.0.0", port, exclusive, (socket: unknown) => {
        colyseus.setListeningSocket(transport, socket || undefined);
        listening?.();
      });
      return transport;
    };
    return {
      transport,
      name: "uws",
      mountHttp: (router) => mountUwsHttp(transport.app, router, config.limits.maxHttpBodyBytes, config.trustProxy, log),
      boundPort: (requested) => {
        const socket = colyseus.listeningSocket(transport);
        return socket ? uws.us_socket_local_port(socket as never) : requested;
      },
      close: () => transport.shutdown(),
    };
  }

  const { WebSocketTransport } = await import("@colyseus/ws-transport");
  const server = http.createServer({ requestTimeout: 10_000, headersTimeout: 10_000 });
  const transport = new WebSocketTransport({ server, maxPayload: frameCap, pingInterval: 10_000, pingMaxRetries: 3, beforeUpgrade });
  // ws has no backpressure limit of its own: a client whose unsent bytes pass the limit is cut
  // off, so that it reconnects and resyncs instead of silently falling behind.
  const sweep = setInterval(() => {
    for (const ws of colyseus.wsClients(transport)) {
      if (ws.bufferedAmount > config.limits.maxBackpressureBytes) ws.terminate();
    }
  }, 250);
  sweep.unref();
  return {
    transport,
    name: "ws",
    mountHttp: (router) => { server.on("request", nodeHttpHandler(router, config.limits.maxHttpBodyBytes, config.trustProxy, log)); },
    boundPort: (requested) => {
      const a = server.address();
      return typeof a === "object" && a ? a.port : requested;
    },
    close: () => { clearInterval(sweep); transport.shutdown(); },
  };
}
