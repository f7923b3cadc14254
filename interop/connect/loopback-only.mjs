// Preloaded (`node --import`) into the TypeScript SDK's example servers, which listen on every
// interface (`app.listen(PORT)`): a listen on a bare port binds 127.0.0.1 instead, so the interop
// traffic stays on loopback.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const bare = typeof args[0] === "number" || (typeof args[0] === "string" && /^\d+$/.test(args[0]));
  if (bare && typeof args[1] !== "string") args.splice(1, 0, "127.0.0.1");
  return listen.apply(this, args);
};
