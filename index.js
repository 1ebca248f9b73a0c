// The `ensemble` package's client API is the client package's build (`@ensemble/client`,
// client/), shipped inside this package too, so `import { connect } from 'ensemble'` works alone.
export * from './client/dist/client/index.js';
