/** The message configFromEnv stops the server with for this environment (fails the test if it accepts it). */
import { expect } from "vitest";
import { ConfigError, configFromEnv } from "../../src/server/config.js";

export function configRefusal(env: NodeJS.ProcessEnv): string {
  try {
    configFromEnv(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error("configuration was accepted");
}
