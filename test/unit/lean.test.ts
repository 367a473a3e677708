// The lean HTTP/1.1 path (src/pipeline/lean.ts): what it takes, and everything it leaves to Node's parser.
import t from 'tap';
import { DateHeader, leanHead, parseLean } from '../../src/pipeline/lean.js';

const MAX = 8192;
const req = (lines: string[]): string => `${lines.join('\r\n')}\r\n\r\n`;

t.test('takes the shapes metadata clients send', async (t) => {
  const r = parseLean(
    req(['GET /latest/meta-data/instance-id HTTP/1.1', 'Host: 169.254.169.254', 'User-Agent: curl/7.88', 'Accept: */*']),
    MAX,
  );
  t.ok(r);
  t.equal(r?.method, 'GET');
  t.equal(r?.path, '/latest/meta-data/instance-id');
  t.equal(r?.query, '');
  t.equal(r?.close, false);
  t.equal(r?.headers['user-agent'], 'curl/7.88', 'names lower-case');
  t.equal(r?.headers['host'], '169.254.169.254');

  const put = parseLean(
    req(['PUT /latest/api/token HTTP/1.1', 'Host: x', 'X-aws-ec2-metadata-token-ttl-seconds:   21600  ', 'Content-Length: 0']),
    MAX,
  );
  t.equal(put?.method, 'PUT');
  t.equal(put?.headers['x-aws-ec2-metadata-token-ttl-seconds'], '21600', 'value trimmed');

  const q = parseLean(req(['GET /computeMetadata/v1/instance/?recursive=true&alt=json HTTP/1.1', 'Host: x', 'Connection: close']), MAX);
  t.equal(q?.path, '/computeMetadata/v1/instance/');
  t.equal(q?.query, 'recursive=true&alt=json');
  t.equal(q?.close, true);
  t.equal(parseLean(req(['HEAD /a%20b HTTP/1.1', 'Host: x', 'Connection: Keep-Alive']), MAX)?.path, '/a b', 'percent-decoded');
});

t.test('leaves everything else to the general parser', async (t) => {
  const cases: [string, string][] = [
    ['partial', 'GET / HTTP/1.1\r\nHost: x\r\n'],
    ['pipelined', req(['GET / HTTP/1.1', 'Host: x']) + req(['GET / HTTP/1.1', 'Host: x'])],
    ['HTTP/1.0', req(['GET / HTTP/1.0'])],
    ['bad version', req(['GET / HTTP/9.9', 'Host: x'])],
    ['no Host', req(['GET / HTTP/1.1'])],
    ['POST', req(['POST / HTTP/1.1', 'Host: x', 'Content-Length: 1'])],
    ['body', req(['PUT / HTTP/1.1', 'Host: x', 'Content-Length: 3'])],
    ['chunked', req(['GET / HTTP/1.1', 'Host: x', 'Transfer-Encoding: chunked'])],
    ['expect', req(['GET / HTTP/1.1', 'Host: x', 'Expect: 100-continue'])],
    ['upgrade', req(['GET / HTTP/1.1', 'Host: x', 'Connection: Upgrade', 'Upgrade: websocket'])],
    ['duplicate header', req(['GET / HTTP/1.1', 'Host: x', 'X-A: 1', 'x-a: 2'])],
    ['folded header', req(['GET / HTTP/1.1', 'Host: x', 'X-A: 1', ' continued'])],
    ['bad header name', req(['GET / HTTP/1.1', 'Host: x', 'Bad Name: 1'])],
    ['control byte', req(['GET / HTTP/1.1', 'Host: x', 'X-A: \x01'])],
    ['obs-text', req(['GET / HTTP/1.1', 'Host: x', 'X-A: \xe9'])],
    ['bare LF', 'GET / HTTP/1.1\nHost: x\r\n\r\n'],
    ['absolute-form', req(['GET http://169.254.169.254/ HTTP/1.1', 'Host: x'])],
    ['undecodable', req(['GET /%E0%A4%A HTTP/1.1', 'Host: x'])],
    ['NUL in path', req(['GET /a%00b HTTP/1.1', 'Host: x'])],
    ['garbage', 'GARBAGE \x01\x02 nonsense\r\n\r\n'],
    ['too big', req(['GET / HTTP/1.1', 'Host: x', `X-Big: ${'a'.repeat(MAX)}`])],
  ];
  for (const [what, text] of cases) t.equal(parseLean(text, MAX), undefined, what);
});

t.test('the response head is laid out as Node lays it out', async (t) => {
  const head = (close: boolean, forced: boolean, keepAliveS: number | undefined): string =>
    leanHead({
      status: 200,
      headers: { 'Content-Type': 'text/plain', Server: 'EC2ws' },
      contentLength: 8,
      date: 'D',
      close,
      forced,
      keepAliveS,
    });
  t.equal(
    head(false, false, 5),
    'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer: EC2ws\r\nContent-Length: 8\r\nDate: D\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n',
  );
  t.equal(
    head(true, false, 5),
    'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer: EC2ws\r\nContent-Length: 8\r\nDate: D\r\nConnection: close\r\n\r\n',
  );
  t.equal(
    head(true, true, 5),
    'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer: EC2ws\r\nContent-Length: 8\r\nConnection: close\r\nDate: D\r\n\r\n',
  );
  t.match(head(false, false, undefined), /Connection: keep-alive\r\n\r\n$/);
  const d = new DateHeader();
  t.equal(d.at(1_700_000_000_000), new Date(1_700_000_000_000).toUTCString());
  t.equal(d.at(1_700_000_000_999), d.at(1_700_000_000_000), 'the same second, the same value');
});
