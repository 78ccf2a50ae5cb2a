/**
 * The sync client, bundled from its TypeScript source (clients/typescript/src)
 * rather than a published package: the app always builds against the client
 * of the same commit.
 */
export * from "../../clients/typescript/src/client.ts";
export * from "../../clients/typescript/src/errors.ts";
export * from "../../clients/typescript/src/storage.ts";
export * from "../../clients/typescript/src/idb.ts";
export * from "../../clients/typescript/src/browser.ts";
export type { FileReference } from "../../clients/typescript/src/files.ts";
