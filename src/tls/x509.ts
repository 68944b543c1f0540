// @peculiar/x509, loaded after the Reflect polyfill its dependency injection (tsyringe) needs at import time.
// Import X.509 classes from here, never from '@peculiar/x509' directly, so the order cannot be got wrong.
import 'reflect-metadata';

export * as x509 from '@peculiar/x509';
