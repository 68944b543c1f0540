// Response bodies the HTTP/1.1 pools read around the parser (readRawBody in http1-pool.ts), process-wide: the
// metrics read them at scrape time, the tests check the path ran.
export const rawBodyStats = { responses: 0, bytes: 0 };
