/** A client for the daemon's admin API (HTTP over its unix socket), for the demo and the tests. */
import http from 'node:http';

export function adminRequest(socketPath: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string | number> =
      payload === undefined ? {} : { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) };
    const req = http.request({ socketPath, path, method, headers, timeout: 5000 }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => {
        let parsed: unknown = text;
        try {
          parsed = text ? (JSON.parse(text) as unknown) : undefined;
        } catch {
          /* not JSON: keep the text */
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    req.on('error', reject).on('timeout', () => req.destroy(new Error(`admin API timeout: ${method} ${path}`)));
    req.end(payload);
  });
}

export const adminGet = (socketPath: string, path: string): Promise<{ status: number; body: unknown }> =>
  adminRequest(socketPath, 'GET', path);
