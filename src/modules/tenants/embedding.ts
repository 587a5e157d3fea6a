import { AppError } from "../../errors.js";
import type { Embedder, EmbedRequest } from "../../platform/embeddings/embedder.js";
import type { TenantContext } from "../../tenancy.js";
import type { TenantConfig } from "./tenants.schemas.js";
import type { EmbeddingSettings, TenantsService } from "./tenants.service.js";

export interface Embedders {
  local: Embedder;
  /** Present when the operator configured an OpenAI-compatible endpoint. */
  openai?: Embedder;
}

/**
 * The embedder a tenant's settings name, with the request fields that go with it: the model
 * and the tenant's own provider key only for the OpenAI provider (the local embedder has one
 * model). Ingestion and search must embed alike, so both call this. A caller that has just
 * read the tenant's configuration passes it as `config` (its key is then read afresh too);
 * without it the settings come from the tenants service's short-lived cache
 * (`embeddingSettings`), which is what every search does.
 */
export async function tenantEmbedder(
  embedders: Embedders,
  tenants: TenantsService,
  ctx: TenantContext,
  config?: Pick<TenantConfig, "embeddingProvider" | "embeddingModel">,
): Promise<{ embedder: Embedder; request: Omit<EmbedRequest, "texts"> }> {
  if (config) {
    const settings = { provider: config.embeddingProvider, model: config.embeddingModel };
    if (settings.provider !== "openai") return embedderFor(embedders, settings);
    const apiKey = await tenants.providerApiKey(ctx);
    return embedderFor(embedders, { ...settings, ...(apiKey ? { apiKey } : {}) });
  }
  return embedderFor(embedders, await tenants.embeddingSettings(ctx));
}

/** The embedder and request fields of settings already read (`embeddingSettings`). */
export function embedderFor(
  embedders: Embedders,
  settings: Pick<EmbeddingSettings, "provider" | "model" | "apiKey">,
): { embedder: Embedder; request: Omit<EmbedRequest, "texts"> } {
  if (settings.provider !== "openai") return { embedder: embedders.local, request: {} };
  if (!embedders.openai) {
    throw new AppError(
      "embedding.not_configured",
      "the tenant's embedding provider is openai, but this server has no OpenAI-compatible endpoint configured",
    );
  }
  const { apiKey } = settings;
  return {
    embedder: embedders.openai,
    request: {
      ...(settings.model ? { model: settings.model } : {}),
      ...(apiKey ? { apiKey } : {}),
    },
  };
}
