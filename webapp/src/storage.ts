/**
 * Where the client keeps its data and outbox in this browser: IndexedDB
 * (clients/typescript/src/idb.ts), so the login, the local copy and the edits
 * not yet pushed survive a reload, a closed tab and a restart, offline too.
 * Where IndexedDB cannot be opened (some private modes), memory: the app
 * works, but forgets everything when the page closes (the login says so).
 */
import { IndexedDbStorage, MemoryStorage, type StorageAdapter } from "./client.ts";

export const DATABASE = "syncserver";

export interface OpenedStorage {
  storage: StorageAdapter;
  /** Survives a reload (IndexedDB) or not (memory). */
  persistent: boolean;
}

export async function openStorage(): Promise<OpenedStorage> {
  try {
    return { storage: await IndexedDbStorage.open(DATABASE), persistent: true };
  } catch (error) {
    console.warn("IndexedDB unavailable; keeping the data in memory", error);
    return { storage: new MemoryStorage(), persistent: false };
  }
}
