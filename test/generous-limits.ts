/**
 * Request limits (README "Configuration") opened wide, for test and load servers that sign in,
 * register and alert hundreds of times from one address. Only where that is the point: the
 * limits themselves are tested at their real sizes (test/abuse.test.ts, test/request-limits.test.ts).
 */
export const GENEROUS_LIMITS: Record<string, string> = {
  HAVEN_LOGIN_PER_MINUTE_PER_ADDRESS: "100000",
  HAVEN_LOGIN_PER_MINUTE_PER_DEVICE: "100000",
  HAVEN_LOGIN_FAILURES_PER_HOUR_PER_ACCOUNT: "100000",
  HAVEN_REGISTER_PER_HOUR_PER_ADDRESS: "100000",
  HAVEN_REGISTER_PER_HOUR_PER_DEVICE: "100000",
  HAVEN_REGISTER_PER_HOUR_PER_EMAIL: "100000",
  HAVEN_ALERT_PER_HOUR_PER_ADDRESS: "100000",
  HAVEN_ALERT_PER_HOUR_PER_DEVICE: "100000",
  HAVEN_ALERT_PER_HOUR_PER_ACCOUNT: "100000",
};
