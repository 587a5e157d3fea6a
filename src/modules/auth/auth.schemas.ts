import { z } from "zod";
import { API_KEY_SCOPES } from "../../tenancy.js";

/** A user as the API shows it; the service's `User` is this schema's type. */
export const userSchema = z.object({
  id: z.uuid(),
  email: z.string(),
  role: z.enum(["owner", "admin", "member", "platform_admin"]),
  createdAt: z.iso.datetime(),
  lastLoginAt: z.iso.datetime().nullable(),
});
export type User = z.infer<typeof userSchema>;

/** What the key list shows of a key (never its secret). */
export const apiKeyInfoSchema = z.object({
  id: z.uuid(),
  name: z.string(),
  prefix: z.string(),
  scopes: z.array(z.enum(API_KEY_SCOPES)),
  createdAt: z.iso.datetime(),
  lastUsedAt: z.iso.datetime().nullable(),
  revokedAt: z.iso.datetime().nullable(),
});
export type ApiKeyInfo = z.infer<typeof apiKeyInfoSchema>;

export const tokenPairSchema = z.object({
  token: z.string(),
  refreshToken: z.string(),
  expiresIn: z.number().int(),
});
export type TokenPair = z.infer<typeof tokenPairSchema>;

/** An email address; surrounding spaces are dropped before it is checked. */
export const email = z
  .string()
  .trim()
  .max(254)
  .pipe(z.email({ message: "must be an email address" }));

export const newPassword = z
  .string()
  .min(10, "must be at least 10 characters")
  .max(256, "must be at most 256 characters");
