/** Types of proto-breaking.mjs, for the tests that import it. */
export declare const RELEASES_DIR: string;
export declare function latestRelease(dir?: string): string | undefined;
