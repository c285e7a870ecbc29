// A raw UAPI client for root tests: one request on a fresh connection to /var/run/wireguard/IFNAME.sock,
// the reply read up to its blank line (interfaces.md). Fails after 3 s rather than hanging a test.

import * as net from 'node:net';
import { socketPath } from '../harness/netns.js';

export function uapi(ifname: string, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(socketPath(ifname));
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no UAPI reply to ${JSON.stringify(request)} within 3 s; got ${JSON.stringify(buf)}`));
    }, 3000);
    s.on('data', (d) => {
      buf += d.toString();
      if (buf.endsWith('\n\n')) {
        clearTimeout(timer);
        s.end();
        resolve(buf);
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.write(request);
  });
}
