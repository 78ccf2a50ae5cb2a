/**
 * `@syncserver/client`: a TypeScript client of the syncserver sync protocol
 * (docs/protocol.md). See README.md.
 */

export {
  SyncClient,
  PUSH_BATCH,
  PULL_PATH,
  LIVE_PATH,
  emptyReport,
  type SyncClientOptions,
  type SyncOptions,
  type SyncReport,
  type Progress,
  type Page,
  type Platform,
  type ResolveChoice,
  type ResolveAnswer,
  type Status,
  type Deprecation,
  type FollowOptions,
} from "./client.js";
export {
  MemoryStorage,
  type StorageAdapter,
  type StorageTx,
  type StoredObject,
  type Mutation,
  type Op,
  type LocalConflict,
  type ConflictStatus,
  type Rejection,
  type PendingUpload,
  type ObjectFilter,
  type Data,
} from "./storage.js";
export { IndexedDbStorage, StorageError, StorageFull, IDB_VERSION } from "./idb.js";
export {
  TabCoordinator,
  requestPersistence,
  estimateStorage,
  type TabCoordinatorOptions,
  type ChangeNotice,
  type LockManagerLike,
  type PersistenceState,
  type StorageEstimateResult,
} from "./browser.js";
export {
  LocalStore,
  type PulledChange,
  type PushResult,
  type PushStatus,
  type RefetchState,
  type ConflictDescription,
  type LocalObject,
} from "./store.js";
export {
  Transport,
  DEFAULT_RETRY,
  RETRY_STATUSES,
  APP_VERSION,
  SCHEMA_VERSION,
  OUTBOX_PENDING,
  OUTBOX_OLDEST_AGE,
  backoff,
  parseRetryAfter,
  schemaHeader,
  type FetchLike,
  type RetryPolicy,
  type TransportOptions,
  type RequestOptions,
  type ApiResponse,
  type TransferStats,
} from "./http.js";
export {
  Files,
  BLOBS_PATH,
  UPLOADS_PATH,
  sha256Hex,
  type FileReference,
  type AttachOptions,
  type UploadProgress,
  type UploadPart,
  type UploadAnswer,
  type FileInfo,
} from "./files.js";
export {
  FieldSpec,
  ModelSpec,
  FORMAT_MESSAGES,
  contentTypeAllowed,
  type Errors,
  type FieldDescription,
  type ModelDescription,
} from "./schema.js";
export {
  ClientError,
  NetworkError,
  ApiError,
  UpgradeRequired,
  UnexpectedResponse,
  NotLoggedIn,
  UnsentChanges,
  ValidationError,
  NotFound,
  StaleResolution,
  ConflictSettled,
  FileNotReady,
  FileCorrupt,
  type ErrorBody,
} from "./errors.js";
