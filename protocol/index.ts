/**
 * The wire protocol of Ensemble: versions, the subject table, the codec (CBOR and JSON), the
 * request API and the log commands (one schema, schema.ts), the error classes with their stable codes,
 * and the inspection stream's format (inspection.ts). Used by the
 * nodes (actors/, cluster/) and by clients (client/); depends on nothing else in the repository.
 */
export * from './api.ts';
export * from './caller.ts';
export * from './codec.ts';
export * from './command.ts';
export * from './errors.ts';
export * from './inspection.ts';
export {
  type Accepts,
  absent,
  type Infer,
  isBytes,
  isCount,
  isMap,
  type Rule,
} from './schema.ts';
export * from './subjects.ts';
export * from './version.ts';
