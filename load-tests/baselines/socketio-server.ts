/**
 * The reference point for `npm run bench`: what a team would write in an afternoon with
 * Socket.IO 4.8 instead of Haven. One room per emergency; a client joins it with a `join` event;
 * every position is broadcast as JSON to the others in the room (socket.to(room).emit). No
 * accounts, no validation, no persistence: only the streaming part that Haven's rooms also do.
 *
 *   PORT=3000 node load-tests/baselines/socketio-server.ts
 */
import { createServer } from "node:http";
import { Server, type Socket } from "socket.io";

const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? "127.0.0.1";

const httpServer = createServer();
const io = new Server(httpServer, { serveClient: false });

io.on("connection", (socket: Socket) => {
  socket.on("join", (room: unknown, ack?: () => void) => {
    if (typeof room !== "string" || room.length > 64) return;
    socket.data.room = room;
    void socket.join(room);
    if (typeof ack === "function") ack();
  });

  socket.on("position", (p: { lat?: unknown; lng?: unknown }) => {
    const room = socket.data.room as string | undefined;
    if (!room || typeof p?.lat !== "number" || typeof p?.lng !== "number") return;
    socket.to(room).emit("position", { id: socket.id, lat: p.lat, lng: p.lng, at: Date.now() });
  });
});

httpServer.listen(port, host, () => console.log(`socket.io baseline listening on ${host}:${port}`));

process.on("SIGTERM", () => {
  io.close();
  process.exit(0);
});
