export {
  autoFusion,
  type FusionMethod,
  type FusionSettings,
  fuse,
  fusionSettings,
  reciprocalRankFusion,
  weightedRrf,
  weightedScoreFusion,
} from "./fusion.js";
export { searchJobs, searchJobTypes } from "./search.jobs.js";
export { searchRoutes } from "./search.routes.js";
export type { SearchResult } from "./search.schemas.js";
export {
  createSearchService,
  type SearchQuery,
  type SearchService,
} from "./search.service.js";
