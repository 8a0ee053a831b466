/** Bearer tokens with roles on every ClickAnalytics RPC; health and reflection stay open. */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HealthCheckRequestSchema, HealthCheckResponse_ServingStatus as Serving, HealthCheckResponseSchema } from "../../gen/grpc/health/v1/health_pb.js";
import { createClickAnalyticsClient, Status, type ClickAnalyticsClient, type EventSchema, type ServiceError } from "../../src/client/index.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ConfigError, configFromEnv } from "../../src/server/config.js";
import { createLogger } from "../../src/server/logger.js";
import { reflect } from "../support/grpcurl.js";
import { startHarness, type Harness } from "../support/harness.js";
import { rawUnary } from "../support/raw-call.js";

const TOKENS = { writer: `writer-${randomUUID()}`, reader: `reader-${randomUUID()}`, admin: `admin-${randomUUID()}` };
const ADMIN_SHORTHAND = `shorthand-${randomUUID()}`;
const WRONG = `wrong-${randomUUID()}`;
const SECRETS = [...Object.values(TOKENS), ADMIN_SHORTHAND, WRONG];

const click = { userId: "u1", productId: "p1", rank: 1, searchQuery: "q", variant: "search_v1", responseTimeMs: 10 };
const impression = { userId: "u1", query: "q", variant: "search_v1", resultsCount: 10, responseTimeMs: 10 };
const clickEvent: MessageInitShape<typeof EventSchema> = { kind: { case: "click", value: click } };

async function failure(promise: Promise<unknown>): Promise<ServiceError> {
  const error = (await promise.then(
    () => undefined,
    (e: unknown) => e,
  )) as ServiceError | undefined;
  expect(error, "call should have failed").toBeDefined();
  for (const secret of SECRETS) expect(error!.details).not.toContain(secret);
  return error!;
}

async function expectStatus(promise: Promise<unknown>, code: Status, detail: RegExp): Promise<void> {
  const error = await failure(promise);
  expect([Status[error.code], error.details]).toEqual([Status[code], expect.stringMatching(detail)]);
}

async function firstSnapshot(client: ClickAnalyticsClient): Promise<unknown> {
  for await (const snapshot of client.watchMetrics({ intervalSeconds: 1 })) return snapshot;
  throw new Error("no snapshot");
}

const logLines: string[] = [];
const capture = createLogger("info", (line) => logLines.push(line));

let h: Harness;
let raw: grpc.Client;
const clients: Record<"none" | "wrong" | "writer" | "reader" | "admin" | "shorthand", ClickAnalyticsClient> = {} as never;

beforeAll(async () => {
  h = await startHarness(
    {
      tokens: [
        { token: TOKENS.writer, role: "writer", name: "ingest" },
        { token: TOKENS.reader, role: "reader", name: "dashboards" },
        { token: TOKENS.admin, role: "admin" },
      ],
      adminToken: ADMIN_SHORTHAND,
    },
    {},
    capture,
  );
  const client = (token?: string) => createClickAnalyticsClient(h.server.address, token === undefined ? {} : { token });
  Object.assign(clients, {
    none: h.client,
    wrong: client(WRONG),
    writer: client(TOKENS.writer),
    reader: client(TOKENS.reader),
    admin: client(TOKENS.admin),
    shorthand: client(ADMIN_SHORTHAND),
  });
  raw = new grpc.Client(h.server.address, grpc.credentials.createInsecure());
});
afterAll(async () => {
  for (const [name, c] of Object.entries(clients)) if (name !== "none") c.close();
  raw.close();
  await h.close();
});

describe("with tokens configured", () => {
  it("refuses calls without a token or with an unknown one as UNAUTHENTICATED", async () => {
    await expectStatus(clients.none.logClick(click), Status.UNAUTHENTICATED, /missing `authorization: Bearer <token>`: LogClick needs a token with role writer or admin/);
    await expectStatus(clients.none.getCtr({}), Status.UNAUTHENTICATED, /GetCtr needs a token with role reader or admin/);
    await expectStatus(clients.none.reset({}), Status.UNAUTHENTICATED, /Reset needs a token with role admin/);
    await expectStatus(clients.wrong.logClick(click), Status.UNAUTHENTICATED, /not a configured token: LogClick needs a token with role writer or admin/);
    await expectStatus(clients.wrong.getCtr({}), Status.UNAUTHENTICATED, /not a configured token/);
    await expectStatus(clients.none.getCtr({}, { metadata: { authorization: "Basic abc" } }), Status.UNAUTHENTICATED, /missing/);
    expect(await h.server.store.collections.clicks.countDocuments({ product_id: "p1", user_id: "u1" })).toBe(0);
  });

  it("lets a writer log and stream events but not read or reset", async () => {
    await expect(clients.writer.logClick(click)).resolves.toMatchObject({ rank: 1 });
    await expect(clients.writer.logImpression(impression)).resolves.toMatchObject({ query: "q" });
    await expect(clients.writer.logEvents({ events: [clickEvent] })).resolves.toMatchObject({ accepted: 1n });
    await expect(clients.writer.streamEvents([{ events: [clickEvent] }, { events: [clickEvent] }])).resolves.toMatchObject({ accepted: 2n });
    await expectStatus(clients.writer.getCtr({}), Status.PERMISSION_DENIED, /GetCtr needs a token with role reader or admin; the presented token has role writer/);
    await expectStatus(firstSnapshot(clients.writer), Status.PERMISSION_DENIED, /WatchMetrics needs a token with role reader or admin/);
    await expectStatus(clients.writer.reset({}), Status.PERMISSION_DENIED, /Reset needs a token with role admin/);
  });

  it("lets a reader read and watch but not write or reset", async () => {
    await expect(clients.reader.getCtr({})).resolves.toMatchObject({ clicks: expect.any(BigInt) });
    await expect(clients.reader.getTopQueries({})).resolves.toBeDefined();
    await expect(clients.reader.getUserSummary({ userId: "u1" })).resolves.toMatchObject({ userId: "u1" });
    await expect(firstSnapshot(clients.reader)).resolves.toBeDefined();
    await expectStatus(clients.reader.logClick(click), Status.PERMISSION_DENIED, /LogClick needs a token with role writer or admin; the presented token has role reader/);
    await expectStatus(clients.reader.logEvents({ events: [clickEvent] }), Status.PERMISSION_DENIED, /LogEvents needs a token with role writer or admin/);
    await expectStatus(clients.reader.streamEvents([{ events: [clickEvent] }]), Status.PERMISSION_DENIED, /StreamEvents needs a token with role writer or admin/);
    await expectStatus(clients.reader.reset({}), Status.PERMISSION_DENIED, /Reset needs a token with role admin/);
  });

  it("lets a reader and an admin export events; a writer is PERMISSION_DENIED, no or an unknown token UNAUTHENTICATED", async () => {
    const userId = `export-${randomUUID()}`;
    await clients.writer.logClick({ ...click, userId, eventId: `${userId}-c` });
    const exported = async (c: ClickAnalyticsClient): Promise<string[]> => {
      const ids: string[] = [];
      for await (const batch of c.exportEvents({ days: 1, userId })) ids.push(...batch.events.map((e) => e.eventId));
      return ids;
    };
    expect(await exported(clients.reader)).toEqual([`${userId}-c`]);
    expect(await exported(clients.admin)).toEqual([`${userId}-c`]);
    expect(await exported(clients.shorthand)).toEqual([`${userId}-c`]);
    await expectStatus(exported(clients.writer), Status.PERMISSION_DENIED, /ExportEvents needs a token with role reader or admin; the presented token has role writer/);
    await expectStatus(exported(clients.none), Status.UNAUTHENTICATED, /missing `authorization: Bearer <token>`: ExportEvents needs a token with role reader or admin/);
    await expectStatus(exported(clients.wrong), Status.UNAUTHENTICATED, /not a configured token: ExportEvents needs a token with role reader or admin/);
  });

  it("lets an admin token (listed or CLICK_ANALYTICS_ADMIN_TOKEN) do everything, Reset included", async () => {
    for (const admin of [clients.admin, clients.shorthand]) {
      await admin.logClick(click);
      await admin.logEvents({ events: [clickEvent] });
      await admin.streamEvents([{ events: [clickEvent] }]);
      expect((await admin.getCtr({})).clicks).toBeGreaterThan(0n);
      await expect(firstSnapshot(admin)).resolves.toBeDefined();
      await expect(admin.reset({})).resolves.toMatchObject({ message: expect.stringMatching(/deleted/) });
      expect(await h.server.store.collections.clicks.countDocuments()).toBe(0);
    }
  });

  it("keeps health and reflection open without a token", async () => {
    const bytes = await rawUnary(raw, "/grpc.health.v1.Health/Check", toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service: "" })));
    expect(fromBinary(HealthCheckResponseSchema, bytes).status).toBe(Serving.SERVING);
    const listed = await reflect(raw, "v1", { case: "listServices", value: "" });
    expect(listed.messageResponse.case).toBe("listServicesResponse");
    const v1alpha = await reflect(raw, "v1alpha", { case: "fileContainingSymbol", value: "clickanalytics.v1.ClickAnalytics" });
    expect(v1alpha.messageResponse.case).toBe("fileDescriptorResponse");
  });

  it("says at start that access control is on, and never logs a token", () => {
    const entries = logLines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(entries.find((e) => String(e.msg).startsWith("access control on"))).toMatchObject({ level: "info", tokens: { reader: 1, writer: 1, admin: 2 } });
    expect(entries.some((e) => e.level === "warn")).toBe(false);
    expect(logLines.length).toBeGreaterThan(0);
    for (const line of logLines) for (const secret of SECRETS) expect(line).not.toContain(secret);
  });
});

describe("without tokens", () => {
  it("is open, and warns loudly at start", async () => {
    const lines: string[] = [];
    const open = await startHarness({}, {}, createLogger("info", (line) => lines.push(line)));
    try {
      await expect(open.client.logClick(click)).resolves.toMatchObject({ rank: 1 });
      await expect(open.client.getCtr({})).resolves.toMatchObject({ clicks: 1n });
      await expectStatus(open.client.reset({}), Status.PERMISSION_DENIED, /CLICK_ANALYTICS_ADMIN_TOKEN/);
    } finally {
      await open.close();
    }
    const warnings = lines.map((l) => JSON.parse(l) as { level: string; msg: string }).filter((e) => e.level === "warn");
    expect(warnings.map((w) => w.msg)).toEqual([expect.stringMatching(/^ACCESS CONTROL OFF: .*anyone who can reach this port/), expect.stringMatching(/Reset is disabled/)]);
  });

  it("with only CLICK_ANALYTICS_ADMIN_TOKEN stays open except for Reset, and never logs the token", async () => {
    const lines: string[] = [];
    const open = await startHarness({ adminToken: ADMIN_SHORTHAND }, {}, createLogger("info", (line) => lines.push(line)));
    const admin = createClickAnalyticsClient(open.server.address, { token: ADMIN_SHORTHAND });
    try {
      await expect(open.client.logClick(click)).resolves.toBeDefined();
      await expectStatus(open.client.reset({}), Status.PERMISSION_DENIED, /Bearer/);
      await expect(admin.reset({})).resolves.toBeDefined();
    } finally {
      admin.close();
      await open.close();
    }
    expect(lines.map((l) => JSON.parse(l) as { level: string; msg: string }).filter((e) => e.level === "warn").map((e) => e.msg)).toEqual([expect.stringMatching(/^ACCESS CONTROL OFF/)]);
    for (const line of lines) expect(line).not.toContain(ADMIN_SHORTHAND);
  });
});

describe("token configuration", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "click-analytics-tokens-"));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const file = async (content: string) => {
    const path = join(dir, `${randomUUID()}.json`);
    await writeFile(path, content);
    return path;
  };
  const refused = (env: NodeJS.ProcessEnv): ConfigError => {
    let error: unknown;
    try {
      configFromEnv(env);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  };

  it("reads role:token pairs, a tokens file and the admin shorthand; several tokens per role", async () => {
    const path = await file(JSON.stringify({ tokens: [{ token: "file-reader", role: "reader", name: "dashboards" }, { token: "w1", role: "writer" }] }));
    const config = configFromEnv({ CLICK_ANALYTICS_TOKENS: " writer:w1 , writer:w2,reader:r:with:colons,", CLICK_ANALYTICS_TOKENS_FILE: path, CLICK_ANALYTICS_ADMIN_TOKEN: "adm" });
    expect(config.tokens).toEqual([
      { token: "w1", role: "writer" },
      { token: "w2", role: "writer" },
      { token: "r:with:colons", role: "reader" },
      { token: "file-reader", role: "reader", name: "dashboards" },
      { token: "w1", role: "writer" },
    ]);
    expect(config.adminToken).toBe("adm");
    expect(configFromEnv({ CLICK_ANALYTICS_ADMIN_TOKEN: "adm" }).tokens).toEqual([]);
    expect(configFromEnv({}).tokens).toEqual([]);
  });

  it("refuses invalid token configuration with one message naming the variable and never the token", async () => {
    const cases: [NodeJS.ProcessEnv, RegExp][] = [
      [{ CLICK_ANALYTICS_TOKENS: "superuser:tok-secret-1" }, /^CLICK_ANALYTICS_TOKENS entry 1 has an unknown role; expected one of reader, writer, admin$/],
      [{ CLICK_ANALYTICS_TOKENS: "reader:ok-1,writer:" }, /^CLICK_ANALYTICS_TOKENS entry 2: the token must be non-empty/],
      [{ CLICK_ANALYTICS_TOKENS: "tok-secret-1" }, /^CLICK_ANALYTICS_TOKENS entry 1 must be role:token/],
      [{ CLICK_ANALYTICS_TOKENS: "reader:tok secret" }, /^CLICK_ANALYTICS_TOKENS entry 1: the token must be .* without spaces/],
      [{ CLICK_ANALYTICS_TOKENS: " , " }, /^CLICK_ANALYTICS_TOKENS is set but lists no tokens/],
      [{ CLICK_ANALYTICS_TOKENS: "reader:tok-secret-1,admin:tok-secret-1" }, /^CLICK_ANALYTICS_TOKENS entry 2 repeats the token of CLICK_ANALYTICS_TOKENS entry 1 with a different role \(admin, not reader\)$/],
      [{ CLICK_ANALYTICS_TOKENS: "reader:tok-secret-1", CLICK_ANALYTICS_ADMIN_TOKEN: "tok-secret-1" }, /^CLICK_ANALYTICS_ADMIN_TOKEN repeats the token of CLICK_ANALYTICS_TOKENS entry 1/],
      [{ CLICK_ANALYTICS_ADMIN_TOKEN: "tok secret" }, /^CLICK_ANALYTICS_ADMIN_TOKEN: the token must be/],
      [{ CLICK_ANALYTICS_TOKENS_FILE: join(dir, "missing.json") }, /^CLICK_ANALYTICS_TOKENS_FILE ".*missing\.json" cannot be read \(ENOENT\)$/],
      [{ CLICK_ANALYTICS_TOKENS_FILE: await file('{"tokens": [{"token": "tok-secret-1", "role": "reader"},]}') }, /^CLICK_ANALYTICS_TOKENS_FILE ".*" is not valid JSON$/],
      [{ CLICK_ANALYTICS_TOKENS_FILE: await file('[{"token": "tok-secret-1", "role": "reader"}]') }, /must be a JSON object with a "tokens" array/],
      [{ CLICK_ANALYTICS_TOKENS_FILE: await file('{"tokens": []}') }, /^CLICK_ANALYTICS_TOKENS_FILE ".*" lists no tokens$/],
      [{ CLICK_ANALYTICS_TOKENS_FILE: await file('{"tokens": [{"token": "tok-secret-1", "role": "root"}]}') }, /^CLICK_ANALYTICS_TOKENS_FILE tokens\[0\]\.role must be one of reader, writer, admin$/],
      [{ CLICK_ANALYTICS_TOKENS_FILE: await file('{"tokens": [{"token": "", "role": "reader"}]}') }, /^CLICK_ANALYTICS_TOKENS_FILE tokens\[0\]: the token must be non-empty/],
      [{ CLICK_ANALYTICS_TOKENS_FILE: await file('{"tokens": [{"role": "reader"}]}') }, /^CLICK_ANALYTICS_TOKENS_FILE tokens\[0\]\.token must be a string$/],
      [
        { CLICK_ANALYTICS_TOKENS: "writer:tok-secret-1", CLICK_ANALYTICS_TOKENS_FILE: await file('{"tokens": [{"token": "tok-secret-1", "role": "reader", "name": "x"}]}') },
        /^CLICK_ANALYTICS_TOKENS_FILE tokens\[0\] repeats the token of CLICK_ANALYTICS_TOKENS entry 1 with a different role/,
      ],
    ];
    for (const [env, message] of cases) {
      const error = refused(env);
      expect(error.message).toMatch(message);
      expect(error.message).not.toContain("tok-secret-1");
      expect(error.message).not.toContain("tok secret");
    }
  });
});

describe("roles per method", () => {
  it("gives every ClickAnalytics method to the roles its prefix names, Reset to admins only", async () => {
    const { rolesFor } = await import("../../src/server/auth.js");
    const { ClickAnalytics } = await import("../../gen/clickanalytics/v1/click_analytics_pb.js");
    const byMethod = Object.fromEntries(ClickAnalytics.methods.map((m) => [m.name, rolesFor(m)]));
    expect(byMethod).toMatchObject({
      LogClick: ["writer", "admin"],
      LogEvents: ["writer", "admin"],
      StreamEvents: ["writer", "admin"],
      GetCtr: ["reader", "admin"],
      WatchMetrics: ["reader", "admin"],
      ExportEvents: ["reader", "admin"],
      Reset: ["admin"],
    });
  });
});
