/**
 * TLS for a local cluster: a private CA and one certificate for the NATS servers (clients and
 * routes, on localhost and 127.0.0.1), made with Debian's `openssl`. Good for trying TLS and for
 * tests; in production bring certificates from your own CA and pass the same three files.
 */
import { execFile } from 'node:child_process';
import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** PEM files: the CA that signed the certificate, the certificate, and its private key. */
export interface TlsFiles {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

const exists = (f: string) =>
  access(f).then(
    () => true,
    () => false,
  );

/**
 * Makes (or reuses, when all are there) `ca.pem`, `server.pem` and `server-key.pem` in `dir`: a
 * CA valid for 10 years and a certificate for `localhost` and `127.0.0.1`, for servers and
 * clients alike (routes use it both ways). Keys are readable by the owner only.
 */
export async function makeLocalTls(dir: string, openssl = 'openssl'): Promise<TlsFiles> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const f = (name: string) => path.join(dir, name);
  const files: TlsFiles = { caFile: f('ca.pem'), certFile: f('server.pem'), keyFile: f('server-key.pem') };
  if ((await Promise.all(Object.values(files).map(exists))).every(Boolean)) return files;
  const days = '3650';
  await run(openssl, [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-sha256',
    '-days',
    days,
    '-keyout',
    f('ca-key.pem'),
    '-out',
    files.caFile,
    '-subj',
    '/CN=Ensemble local CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await run(openssl, [
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-sha256',
    '-keyout',
    files.keyFile,
    '-out',
    f('server.csr'),
    '-subj',
    '/CN=localhost',
  ]);
  await writeFile(
    f('server.ext'),
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n',
  );
  await run(openssl, [
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    files.caFile,
    '-CAkey',
    f('ca-key.pem'),
    '-CAcreateserial',
    '-out',
    files.certFile,
    '-days',
    days,
    '-sha256',
    '-extfile',
    f('server.ext'),
  ]);
  return files;
}

/**
 * The nats-server configuration `base` (the text of nats.conf, or null for none) with TLS added on
 * client connections and, with `routes`, on routes. (nats-server resolves an `include` relative to
 * the including file, so the text is copied rather than included.)
 */
export function tlsConfig(base: string | null, tls: TlsFiles, routes: boolean): string {
  const block = (indent: string) =>
    [
      `${indent}tls {`,
      `${indent}  cert_file: ${JSON.stringify(tls.certFile)}`,
      `${indent}  key_file: ${JSON.stringify(tls.keyFile)}`,
      `${indent}  ca_file: ${JSON.stringify(tls.caFile)}`,
      `${indent}  timeout: 2`,
      `${indent}}`,
    ].join('\n');
  return [
    '# Generated: the Ensemble configuration with TLS on client connections and routes.',
    ...(base === null ? [] : [base]),
    block(''),
    ...(routes ? ['cluster {', block('  '), '}'] : []),
    '',
  ].join('\n');
}

/** The TLS files of `--tls-ca`, `--tls-cert`, `--tls-key`, or undefined when none is given. */
export function tlsOf(a: {
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}): { caFile?: string; certFile?: string; keyFile?: string } | undefined {
  if (!a.tlsCa && !a.tlsCert && !a.tlsKey) return undefined;
  return {
    ...(a.tlsCa ? { caFile: a.tlsCa } : {}),
    ...(a.tlsCert ? { certFile: a.tlsCert } : {}),
    ...(a.tlsKey ? { keyFile: a.tlsKey } : {}),
  };
}
