/** Plaintext, TLS and mutual TLS against the real server, with certificates made by openssl at run time. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClickAnalyticsClient, Status, type ClientOptions, type ServiceError } from "../../src/client/index.js";
import { configFromEnv } from "../../src/server/config.js";
import { makeCertificates, type Certificates } from "../support/certificates.js";
import { configRefusal } from "../support/config-refusal.js";
import { startHarness, type Harness } from "../support/harness.js";

const click = { userId: "u1", productId: "p1", rank: 1, searchQuery: "q", variant: "search_v1", responseTimeMs: 10 };

let dir: string;
let pem: Certificates;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "click-analytics-tls-"));
  pem = await makeCertificates(dir);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Resolves with the status code of a LogClick from a client with these options. */
async function logClickWith(address: string, options: ClientOptions): Promise<Status> {
  const client = createClickAnalyticsClient(address, { defaultTimeoutMs: 5_000, ...options });
  try {
    await client.logClick(click);
    return Status.OK;
  } catch (error) {
    return (error as ServiceError).code;
  } finally {
    client.close();
  }
}

describe("plaintext (no TLS configured)", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(() => h.close());

  it("serves plaintext clients and refuses TLS ones", async () => {
    await expect(h.client.logClick(click)).resolves.toMatchObject({ rank: 1 });
    expect(Status[await logClickWith(h.server.address, { tls: { ca: pem.ca.cert } })]).toBe("UNAVAILABLE");
  });
});

describe("TLS", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ tls: { cert: pem.server.cert, key: pem.server.key } }, { tls: { ca: pem.ca.cert } });
  });
  afterAll(() => h.close());

  it("serves a client that trusts the CA", async () => {
    await expect(h.client.logClick(click)).resolves.toMatchObject({ rank: 1 });
    expect(Status[await logClickWith(`localhost:${h.server.port}`, { tls: { ca: pem.ca.cert.toString() } })]).toBe("OK");
  });

  it("refuses a plaintext client and one that does not trust the CA", async () => {
    expect(Status[await logClickWith(h.server.address, {})]).toBe("UNAVAILABLE");
    expect(Status[await logClickWith(h.server.address, { tls: {} })]).toBe("UNAVAILABLE");
    expect(Status[await logClickWith(h.server.address, { tls: { ca: pem.rogueCa.cert } })]).toBe("UNAVAILABLE");
  });

  it("checks the certificate against serverNameOverride when given", async () => {
    expect(Status[await logClickWith(h.server.address, { tls: { ca: pem.ca.cert, serverNameOverride: "localhost" } })]).toBe("OK");
    expect(Status[await logClickWith(h.server.address, { tls: { ca: pem.ca.cert, serverNameOverride: "analytics.example.com" } })]).toBe("UNAVAILABLE");
  });
});

describe("mutual TLS", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ tls: { cert: pem.server.cert, key: pem.server.key, clientCa: pem.ca.cert } }, { tls: { ca: pem.ca.cert, cert: pem.client.cert, key: pem.client.key } });
  });
  afterAll(() => h.close());

  it("serves a client whose certificate the client CA signed", async () => {
    await expect(h.client.logClick(click)).resolves.toMatchObject({ rank: 1 });
    await expect(h.client.getCtr({})).resolves.toMatchObject({ clicks: 1n });
  });

  it("refuses a client without a certificate, with a rogue CA's certificate, or in plaintext", async () => {
    expect(Status[await logClickWith(h.server.address, { tls: { ca: pem.ca.cert } })]).toBe("UNAVAILABLE");
    expect(Status[await logClickWith(h.server.address, { tls: { ca: pem.ca.cert, cert: pem.rogueClient.cert, key: pem.rogueClient.key } })]).toBe("UNAVAILABLE");
    expect(Status[await logClickWith(h.server.address, {})]).toBe("UNAVAILABLE");
    expect(await h.server.store.collections.clicks.countDocuments()).toBe(1);
  });
});

describe("TLS configuration", () => {
  const refused = configRefusal;
  const path = (name: string) => join(dir, name);

  it("reads certificate, key and client CA files; plaintext when unset", () => {
    expect(configFromEnv({}).tls).toBeUndefined();
    expect(configFromEnv({ TLS_CERT_FILE: path("server.crt"), TLS_KEY_FILE: path("server.key") }).tls).toEqual({ cert: pem.server.cert, key: pem.server.key, clientCa: undefined });
    expect(configFromEnv({ TLS_CERT_FILE: path("server.crt"), TLS_KEY_FILE: path("server.key"), TLS_CLIENT_CA_FILE: path("ca.crt") }).tls).toEqual({ cert: pem.server.cert, key: pem.server.key, clientCa: pem.ca.cert });
  });

  it("refuses incomplete, unreadable or mismatched files with a message naming the variable", () => {
    expect(refused({ TLS_CERT_FILE: path("server.crt") })).toBe("TLS_CERT_FILE and TLS_KEY_FILE go together; TLS_KEY_FILE is not set");
    expect(refused({ TLS_KEY_FILE: path("server.key") })).toBe("TLS_CERT_FILE and TLS_KEY_FILE go together; TLS_CERT_FILE is not set");
    expect(refused({ TLS_CLIENT_CA_FILE: path("ca.crt") })).toBe("TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE");
    expect(refused({ TLS_CERT_FILE: path("nope.crt"), TLS_KEY_FILE: path("server.key") })).toMatch(/^TLS_CERT_FILE ".*nope\.crt" cannot be read \(ENOENT\)$/);
    expect(refused({ TLS_CERT_FILE: path("server.crt"), TLS_KEY_FILE: dir })).toMatch(/^TLS_KEY_FILE ".*" cannot be read \(EISDIR\)$/);
    expect(refused({ TLS_CERT_FILE: path("server.crt"), TLS_KEY_FILE: path("server.key"), TLS_CLIENT_CA_FILE: path("nope.crt") })).toMatch(/^TLS_CLIENT_CA_FILE ".*" cannot be read/);
    expect(refused({ TLS_CERT_FILE: path("server.key"), TLS_KEY_FILE: path("server.key") })).toMatch(/^TLS_CERT_FILE ".*" is not a PEM certificate$/);
    expect(refused({ TLS_CERT_FILE: path("server.crt"), TLS_KEY_FILE: path("server.crt") })).toMatch(/^TLS_KEY_FILE ".*" is not an unencrypted PEM private key$/);
    expect(refused({ TLS_CERT_FILE: path("server.crt"), TLS_KEY_FILE: path("client.key") })).toMatch(/^TLS_KEY_FILE ".*" is not the key of the certificate in TLS_CERT_FILE$/);
  });
});
