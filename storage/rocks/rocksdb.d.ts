/**
 * The part of the `rocksdb` package (5.x, abstract-leveldown 7 callback API) that storage/ uses.
 * Keys and values must be `Buffer`s: the binding stringifies anything else.
 */
declare module 'rocksdb' {
  export type ErrorCallback = (err?: Error | null) => void;

  export interface OpenOptions {
    createIfMissing?: boolean;
    errorIfExists?: boolean;
    compression?: boolean;
    cacheSize?: number;
    writeBufferSize?: number;
    maxOpenFiles?: number;
    infoLogLevel?: string;
  }

  export interface RangeOptions {
    gt?: Buffer;
    gte?: Buffer;
    lt?: Buffer;
    lte?: Buffer;
    reverse?: boolean;
    limit?: number;
  }

  export interface IteratorOptions extends RangeOptions {
    keys?: boolean;
    values?: boolean;
    keyAsBuffer?: boolean;
    valueAsBuffer?: boolean;
    highWaterMark?: number;
    fillCache?: boolean;
  }

  export interface WriteOptions {
    sync?: boolean;
  }

  export interface Iterator {
    next(cb: (err: Error | null | undefined, key?: Buffer, value?: Buffer) => void): void;
    seek(target: Buffer): void;
    end(cb: ErrorCallback): void;
  }

  export interface ChainedBatch {
    put(key: Buffer, value: Buffer): ChainedBatch;
    del(key: Buffer): ChainedBatch;
    clear(): ChainedBatch;
    write(options: WriteOptions, cb: ErrorCallback): void;
  }

  export type BatchOp = { type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer };

  export interface RocksDB {
    readonly status: 'new' | 'opening' | 'open' | 'closing' | 'closed';
    readonly location: string;
    open(options: OpenOptions, cb: ErrorCallback): void;
    close(cb: ErrorCallback): void;
    get(
      key: Buffer,
      options: { asBuffer?: boolean; fillCache?: boolean },
      cb: (err: Error | null | undefined, value?: Buffer) => void,
    ): void;
    put(key: Buffer, value: Buffer, options: WriteOptions, cb: ErrorCallback): void;
    del(key: Buffer, options: WriteOptions, cb: ErrorCallback): void;
    batch(ops: BatchOp[], options: WriteOptions, cb: ErrorCallback): void;
    batch(): ChainedBatch;
    iterator(options: IteratorOptions): Iterator;
    clear(options: RangeOptions, cb: ErrorCallback): void;
  }

  export interface RocksDBConstructor {
    (location: string): RocksDB;
    new (location: string): RocksDB;
    destroy(location: string, cb: ErrorCallback): void;
    repair(location: string, cb: ErrorCallback): void;
  }

  const rocksdb: RocksDBConstructor;
  export default rocksdb;
}
