import { isIP } from "node:net";

/**
 * Which IP addresses a server-side fetch may connect to. Everything that reaches the host
 * itself, its private networks or cloud metadata services is refused, so that a URL a tenant
 * submits cannot read internal endpoints (SSRF).
 */

export type AddressClass =
  | "public"
  /** Cloud instance metadata (credentials live there): refused even when private is allowed. */
  | "metadata"
  | "loopback"
  | "private"
  | "link-local"
  | "unique-local"
  | "cgnat"
  | "multicast"
  | "unspecified"
  | "reserved"
  /** Not an IP address at all. */
  | "invalid";

/** True when a fetch may connect to `address`; `allowPrivate` opens all but metadata. */
export function isAllowedAddress(address: string, allowPrivate: boolean): boolean {
  const kind = classifyAddress(address);
  return kind === "public" || (allowPrivate && kind !== "metadata" && kind !== "invalid");
}

interface Range {
  bytes: Uint8Array;
  bits: number;
  kind: Exclude<AddressClass, "public" | "invalid">;
}

function range(cidr: string, kind: Range["kind"]): Range {
  const [ip = "", bits = ""] = cidr.split("/");
  const bytes = toBytes(ip);
  if (!bytes) throw new Error(`bad range ${cidr}`);
  return { bytes, bits: Number(bits), kind };
}

// First match wins, so the metadata addresses come before the ranges that contain them.
const V4_RANGES: Range[] = [
  range("169.254.169.254/32", "metadata"), // AWS, GCP, Azure, OpenStack, Oracle
  range("169.254.170.2/32", "metadata"), // AWS ECS task credentials
  range("100.100.100.200/32", "metadata"), // Alibaba Cloud
  range("0.0.0.0/32", "unspecified"),
  range("0.0.0.0/8", "reserved"), // "this network": some stacks route it to the host
  range("10.0.0.0/8", "private"),
  range("100.64.0.0/10", "cgnat"),
  range("127.0.0.0/8", "loopback"),
  range("169.254.0.0/16", "link-local"),
  range("172.16.0.0/12", "private"),
  range("192.0.0.0/24", "reserved"), // IETF protocol assignments
  range("192.0.2.0/24", "reserved"), // documentation
  range("192.88.99.0/24", "reserved"), // 6to4 relay anycast
  range("192.168.0.0/16", "private"),
  range("198.18.0.0/15", "reserved"), // benchmarking
  range("198.51.100.0/24", "reserved"), // documentation
  range("203.0.113.0/24", "reserved"), // documentation
  range("224.0.0.0/4", "multicast"),
  range("240.0.0.0/4", "reserved"), // includes the broadcast address
];

const V6_RANGES: Range[] = [
  range("fd00:ec2::254/128", "metadata"), // AWS over IPv6
  range("::/128", "unspecified"),
  range("::1/128", "loopback"),
  range("::/96", "reserved"), // IPv4-compatible, deprecated
  range("64:ff9b:1::/48", "reserved"), // local-use NAT64
  range("100::/64", "reserved"), // discard-only
  range("2001::/32", "reserved"), // Teredo
  range("2001:db8::/32", "reserved"), // documentation
  range("fc00::/7", "unique-local"),
  range("fe80::/10", "link-local"),
  range("fec0::/10", "link-local"), // deprecated site-local
  range("ff00::/8", "multicast"),
];

/**
 * Classifies an IP address. IPv6 forms that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`,
 * NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by that IPv4 address, since that is where
 * the packets end up.
 */
export function classifyAddress(address: string): AddressClass {
  const bytes = toBytes(address);
  if (!bytes) return "invalid";
  if (bytes.length === 4) return match(bytes, V4_RANGES);
  const embedded = embeddedV4(bytes);
  if (embedded) return match(embedded, V4_RANGES);
  return match(bytes, V6_RANGES);
}

function match(bytes: Uint8Array, ranges: Range[]): AddressClass {
  for (const r of ranges) if (inRange(bytes, r)) return r.kind;
  return "public";
}

function inRange(bytes: Uint8Array, r: Range): boolean {
  for (let bit = 0; bit < r.bits; bit += 8) {
    const left = Math.min(8, r.bits - bit);
    const mask = (0xff << (8 - left)) & 0xff;
    const i = bit / 8;
    if (((bytes[i] ?? 0) & mask) !== ((r.bytes[i] ?? 0) & mask)) return false;
  }
  return true;
}

function embeddedV4(b: Uint8Array): Uint8Array | undefined {
  const zeros = (from: number, to: number) => b.subarray(from, to).every((x) => x === 0);
  // ::ffff:a.b.c.d
  if (zeros(0, 10) && b[10] === 0xff && b[11] === 0xff) return b.subarray(12, 16);
  // 64:ff9b::a.b.c.d (NAT64 well-known prefix)
  if (b[0] === 0 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zeros(4, 12)) {
    return b.subarray(12, 16);
  }
  // 2002:aabb:ccdd::/48 (6to4)
  if (b[0] === 0x20 && b[1] === 0x02) return b.subarray(2, 6);
  return undefined;
}

/** 4 bytes for IPv4, 16 for IPv6 (zone id ignored), undefined for anything else. */
function toBytes(address: string): Uint8Array | undefined {
  const ip = address.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  const family = isIP(ip);
  if (family === 4) return Uint8Array.from(ip.split(".").map(Number));
  if (family !== 6) return undefined;
  let text = ip.toLowerCase();
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)?.[1];
  if (dotted) {
    const [a = 0, b = 0, c = 0, d = 0] = dotted.split(".").map(Number);
    text = `${text.slice(0, -dotted.length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const headGroups = head === "" ? [] : head.split(":");
  const tailGroups = tail === undefined || tail === "" ? [] : tail.split(":");
  const fill = 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(fill).fill("0"), ...tailGroups];
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    const n = Number.parseInt(g, 16);
    bytes[i * 2] = n >> 8;
    bytes[i * 2 + 1] = n & 0xff;
  });
  return bytes;
}
