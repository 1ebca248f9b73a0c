// The `ensemble` package's client API is the client-only package's: one copy of every class.
export * from '@ensemble/client';
