import { z } from "zod";

/** Path parameter `:id` that must be a UUID; anything else is a 400, not a database error. */
export const idParams = z.object({ id: z.uuid({ message: "must be a UUID" }) });

export const userSchema = z.object({
  id: z.uuid(),
  email: z.string(),
  role: z.enum(["owner", "admin", "member", "platform_admin"]),
  createdAt: z.iso.datetime(),
  lastLoginAt: z.iso.datetime().nullable(),
});

export const apiKeyInfoSchema = z.object({
  id: z.uuid(),
  name: z.string(),
  prefix: z.string(),
  createdAt: z.iso.datetime(),
  lastUsedAt: z.iso.datetime().nullable(),
  revokedAt: z.iso.datetime().nullable(),
});

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

export const tokenPairSchema = z.object({
  token: z.string(),
  refreshToken: z.string(),
  expiresIn: z.number().int(),
});

/** The response of a route that answers 204: no body (the OpenAPI document shows none). */
export const noContent = z.undefined().describe("No content");
