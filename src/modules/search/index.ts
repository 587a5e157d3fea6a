export { searchJobs, searchJobTypes } from "./search.jobs.js";
export { searchRoutes } from "./search.routes.js";
export type { SearchResult } from "./search.schemas.js";
export {
  createSearchService,
  reciprocalRankFusion,
  type SearchQuery,
  type SearchService,
} from "./search.service.js";
