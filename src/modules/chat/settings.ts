import { createHash } from "node:crypto";
import { type Db, inTransaction } from "../../platform/db/index.js";
import type { TenantContext } from "../../tenancy.js";
import type { AuditLog } from "../audit/index.js";
import {
  CHAT_DEFAULTS,
  type ChatSettings,
  type ChatSettingsView,
  chatSettingsSchema,
} from "./chat.schemas.js";
import { chatStore as store } from "./chat.store.js";

export type EffectiveSettings = ChatSettingsView["effective"];

function effectiveOf(settings: ChatSettings): EffectiveSettings {
  return { ...CHAT_DEFAULTS, ...settings };
}

/** The keys whose values differ (canonical JSON: jsonb gives keys back reordered). */
function changedKeys(before: ChatSettings, after: ChatSettings): string[] {
  const canon = (v: unknown): string =>
    JSON.stringify(v, (_, x) =>
      x && typeof x === "object" && !Array.isArray(x)
        ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => a.localeCompare(b)))
        : x,
    ) ?? "undefined";
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...keys]
    .filter((k) => canon(before[k as keyof ChatSettings]) !== canon(after[k as keyof ChatSettings]))
    .sort();
}

/** The tenant's assistant settings (`chat_settings`), stored as set; defaults fill the rest. */
export function createChatSettings(deps: { db: Db; audit: Pick<AuditLog, "record"> }) {
  const { db } = deps;

  async function stored(tenantId: string): Promise<ChatSettings> {
    const raw = await store.settings(db, tenantId);
    // Written only by `put`, which validated it: a row that no longer parses is a bug (500).
    return raw === undefined ? {} : chatSettingsSchema.parse(raw);
  }

  return {
    async effective(ctx: TenantContext): Promise<EffectiveSettings> {
      return effectiveOf(await stored(ctx.tenantId));
    },

    async view(ctx: TenantContext): Promise<ChatSettingsView> {
      const settings = await stored(ctx.tenantId);
      return { settings, effective: effectiveOf(settings) };
    },

    /** Replaces the settings (keys left out take their defaults); audited when something changed. */
    async put(ctx: TenantContext, settings: ChatSettings): Promise<ChatSettingsView> {
      await inTransaction(db, undefined, async (tx) => {
        const raw = await store.settingsForUpdate(tx, ctx.tenantId);
        const before = raw === undefined ? {} : chatSettingsSchema.parse(raw);
        await store.putSettings(tx, ctx.tenantId, settings);
        const changed = changedKeys(before, settings);
        if (changed.length === 0) return;
        // The system prompt is a text body: the audit row keeps its digest and length.
        const value = (s: ChatSettings, k: string) => {
          const v = s[k as keyof ChatSettings];
          if (k !== "systemPrompt" || typeof v !== "string") return v ?? null;
          return { sha256: createHash("sha256").update(v).digest("hex"), length: v.length };
        };
        const pick = (s: ChatSettings) => Object.fromEntries(changed.map((k) => [k, value(s, k)]));
        await deps.audit.record(
          ctx,
          {
            eventType: "chat_settings.update",
            entityType: "chat_settings",
            entityId: ctx.tenantId,
            action: "update",
            oldValues: pick(before),
            newValues: pick(settings),
          },
          { tx },
        );
      });
      return { settings, effective: effectiveOf(settings) };
    },
  };
}
