import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from "node:crypto";

/**
 * Ed25519 signing keys (the audit log's digests). A private key is given as PKCS#8, in PEM or as
 * base64 of its DER; a public key as SPKI, in PEM or base64 DER. The key id is SHA-256 (hex) of
 * the public key's SPKI DER: it names the key in every signed digest.
 */

export interface SigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** SPKI PEM of the public key. */
  publicKeyPem: string;
  keyId: string;
}

/** A new Ed25519 private key as PKCS#8 PEM. */
export function generateSigningKeyPem(): string {
  const { privateKey } = generateKeyPairSync("ed25519");
  return privateKey.export({ type: "pkcs8", format: "pem" }).toString();
}

const isPem = (text: string) => /-----BEGIN [A-Z ]+-----/.test(text);

/** Reads a PKCS#8 Ed25519 private key (PEM or base64 DER); throws a message saying what is wrong. */
export function loadSigningKey(text: string): SigningKey {
  const t = text.trim();
  let privateKey: KeyObject;
  try {
    privateKey = isPem(t)
      ? createPrivateKey({ key: t, format: "pem" })
      : createPrivateKey({ key: Buffer.from(t, "base64"), format: "der", type: "pkcs8" });
  } catch {
    throw new Error("is not a PKCS#8 private key (PEM, or base64 of its DER)");
  }
  if (privateKey.asymmetricKeyType !== "ed25519") {
    throw new Error(`is a ${privateKey.asymmetricKeyType} key; an Ed25519 key is required`);
  }
  const publicKey = createPublicKey(privateKey);
  return {
    privateKey,
    publicKey,
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
    keyId: keyIdOf(publicKey),
  };
}

/** Reads an Ed25519 public key (SPKI PEM or base64 DER; a private key gives its public half). */
export function loadPublicKey(text: string): KeyObject {
  const t = text.trim();
  let key: KeyObject;
  try {
    if (isPem(t)) key = createPublicKey({ key: t, format: "pem" });
    else key = createPublicKey({ key: Buffer.from(t, "base64"), format: "der", type: "spki" });
  } catch {
    throw new Error("is not a public key (SPKI PEM, or base64 of its DER)");
  }
  if (key.asymmetricKeyType !== "ed25519") {
    throw new Error(`is a ${key.asymmetricKeyType} key; an Ed25519 key is required`);
  }
  return key;
}

export function keyIdOf(publicKey: KeyObject): string {
  return createHash("sha256")
    .update(publicKey.export({ type: "spki", format: "der" }))
    .digest("hex");
}

/** Ed25519 signature of the UTF-8 `text`, base64. */
export function signText(privateKey: KeyObject, text: string): string {
  return sign(null, Buffer.from(text, "utf8"), privateKey).toString("base64");
}

export function verifyText(publicKey: KeyObject, text: string, signature: string): boolean {
  try {
    return verify(null, Buffer.from(text, "utf8"), publicKey, Buffer.from(signature, "base64"));
  } catch {
    return false;
  }
}
