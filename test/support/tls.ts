/** Self-signed certificates for TLS tests (openssl, Debian's): a cert for 127.0.0.1 and localhost. */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export interface CertFiles {
  dir: string;
  certFile: string;
  keyFile: string;
}

/** Paths in a new temp dir (the files are written by `writeCert`). */
export function certPaths(): CertFiles {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shophook-tls-"));
  return { dir, certFile: path.join(dir, "cert.pem"), keyFile: path.join(dir, "key.pem") };
}

/** Writes a fresh self-signed key and certificate (CN `cn`, SAN IP 127.0.0.1 and localhost) to `files`. */
export function writeCert(files: CertFiles, cn = "shophook test"): void {
  const tmp = path.join(files.dir, `new-${Date.now()}`);
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
    "-subj", `/CN=${cn}`, "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "-keyout", `${tmp}.key`, "-out", `${tmp}.crt`,
  ], { stdio: "ignore" });
  // Key first, then the certificate: the server reloads when either changes.
  fs.renameSync(`${tmp}.key`, files.keyFile);
  fs.renameSync(`${tmp}.crt`, files.certFile);
}
