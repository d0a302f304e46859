/** The peer API's command routes, as the replicas that send them build them. */
export const peerPaths = {
  takeover: (log: string) => `/peer/v1/logs/${encodeURIComponent(log)}/takeover`,
  fence: (log: string) => `/peer/v1/logs/${encodeURIComponent(log)}/fence`,
  fetch: (log: string) => `/peer/v1/logs/${encodeURIComponent(log)}/fetch`,
};
