export { knowledgeRoutes } from "./knowledge.routes.js";
export { KNOWLEDGE_TYPES, type KnowledgeInput, type KnowledgeType } from "./knowledge.schemas.js";
export { createKnowledgeService, type KnowledgeService } from "./knowledge.service.js";
