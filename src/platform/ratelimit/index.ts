export {
  createLimiterFactory,
  FALLBACK_METRIC,
  type LimiterFactory,
  type WindowCounter,
  type WindowCounterOptions,
  type WindowState,
} from "./counter.js";
export {
  createFailureThrottle,
  type FailureThrottle,
  type FailureThrottleOptions,
  type Reservation,
} from "./failure-throttle.js";
export { type RateLimitFields, rateLimitFields } from "./headers.js";
export {
  createRequestLimiter,
  type LimitDecision,
  mostConstrained,
  type PolicyLimits,
  type PolicyState,
  type RequestLimiter,
  type RequestLimiterOptions,
  type WindowPolicy,
} from "./request-limiter.js";
