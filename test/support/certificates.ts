/** Test certificates made by openssl at run time: a CA, a server and client it signed, and a rogue CA with its own client. */
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface Pem {
  cert: Buffer;
  key: Buffer;
}

export type Certificates = Record<"ca" | "server" | "client" | "rogueCa" | "rogueClient", Pem>;

const CA_EXT = "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n";
const SERVER_EXT = "basicConstraints = CA:FALSE\nsubjectAltName = DNS:localhost, IP:127.0.0.1\nextendedKeyUsage = serverAuth\n";
const CLIENT_EXT = "basicConstraints = CA:FALSE\nextendedKeyUsage = clientAuth\n";

/** A P-256 key and a certificate in `dir` as NAME.crt and NAME.key: self-signed (a CA) or signed by `issuer`. */
async function certificate(dir: string, name: string, subject: string, extensions: string, issuer?: string): Promise<Pem> {
  const file = (suffix: string) => join(dir, `${name}.${suffix}`);
  await writeFile(file("ext"), extensions);
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", file("key"), "-subj", subject];
  if (issuer === undefined) {
    await writeFile(file("cnf"), `[req]\ndistinguished_name = dn\n[dn]\n[v3]\n${extensions}`);
    await run("openssl", ["req", "-x509", ...key, "-days", "1", "-out", file("crt"), "-extensions", "v3", "-config", file("cnf")]);
  } else {
    await run("openssl", ["req", "-new", ...key, "-out", file("csr")]);
    const ca = (suffix: string) => join(dir, `${issuer}.${suffix}`);
    await run("openssl", ["x509", "-req", "-in", file("csr"), "-CA", ca("crt"), "-CAkey", ca("key"), "-CAcreateserial", "-days", "1", "-out", file("crt"), "-extfile", file("ext")]);
  }
  return { cert: await readFile(file("crt")), key: await readFile(file("key")) };
}

/** Writes the set into `dir` (server.crt/server.key for localhost and 127.0.0.1, ca.crt, ...) and returns their contents. */
export async function makeCertificates(dir: string): Promise<Certificates> {
  const ca = await certificate(dir, "ca", "/CN=ClickAnalytics test CA", CA_EXT);
  const server = await certificate(dir, "server", "/CN=localhost", SERVER_EXT, "ca");
  const client = await certificate(dir, "client", "/CN=dashboards", CLIENT_EXT, "ca");
  const rogueCa = await certificate(dir, "rogueCa", "/CN=Rogue CA", CA_EXT);
  const rogueClient = await certificate(dir, "rogueClient", "/CN=dashboards", CLIENT_EXT, "rogueCa");
  return { ca, server, client, rogueCa, rogueClient };
}
