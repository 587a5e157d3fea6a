import { LRUCache } from "lru-cache";

/**
 * A keyed pool of open resources (here: one tenant's LanceDB connection and tables), bounded
 * by count, least recently used first out, closed after `idleMs` without use.
 *
 * A resource is never closed under a caller: `use` holds a reference for the duration of its
 * callback, and an entry evicted while referenced leaves the pool at once (a new `use` opens a
 * fresh one) but is closed only when its last user is done. So while evicted entries are still
 * busy, more than `max` resources may be open.
 */
export interface LruPoolOptions<T> {
  max: number;
  idleMs: number;
  open(key: string): Promise<T>;
  close(value: T, key: string): void | Promise<void>;
  /** A failed close (the entry is gone either way). */
  onCloseError(err: unknown, key: string): void;
  /** Milliseconds clock; injectable so tests need no timers. */
  now?: () => number;
}

export interface LruPool<T> {
  /** Runs `fn` with the open resource for `key`, opening it when needed. */
  use<R>(key: string, fn: (value: T) => Promise<R>): Promise<R>;
  /** Removes `key`; resolves once it is closed (after its current users are done). */
  evict(key: string): Promise<void>;
  /** Closes idle entries. Runs on every `use` and on a timer. */
  sweep(): void;
  /** Resources not yet closed (in the pool or still draining). */
  openValues(): T[];
  /** Closes everything, waiting for current users; `use` rejects afterwards. Idempotent. */
  close(): Promise<void>;
}

interface Entry<T> {
  key: string;
  value: Promise<T>;
  resolved?: T;
  refs: number;
  lastUsed: number;
  retired: boolean;
  closed: Promise<void>;
  markClosed: () => void;
}

/**
 * The order and the bound are lru-cache's; the references and the idle clock are ours. Idle
 * here means "no user since the last one left", which lru-cache's TTL (the age since the last
 * get or set, users or not) does not express: a long search would expire under its caller.
 */
export function createLruPool<T>(opts: LruPoolOptions<T>): LruPool<T> {
  const now = opts.now ?? Date.now;
  const entries = new LRUCache<string, Entry<T>>({
    max: Math.max(1, opts.max),
    // Every way out of the cache (pushed out past `max`, idle, evicted, closed) lands here.
    dispose: (e) => retire(e),
  });
  const draining = new Set<Entry<T>>();
  let closing: Promise<void> | undefined;

  const timer = setInterval(() => sweep(), Math.min(Math.max(opts.idleMs, 1_000), 60_000));
  timer.unref();

  async function closeValue(v: T, key: string): Promise<void> {
    try {
      await opts.close(v, key);
    } catch (err) {
      opts.onCloseError(err, key);
    }
  }

  function finish(e: Entry<T>): void {
    draining.delete(e);
    const v = e.resolved;
    e.resolved = undefined;
    if (v !== undefined) {
      // Synchronously started, so `openValues` no longer counts it once this returns.
      void closeValue(v, e.key).finally(e.markClosed);
      return;
    }
    // Still opening: close it when it opens. A failed open has nothing to close (its error
    // went to the caller of `use`).
    e.value
      .then(
        (opened) => {
          e.resolved = undefined;
          return closeValue(opened, e.key);
        },
        () => undefined,
      )
      .finally(e.markClosed);
  }

  /** An entry has left the cache: closed now if unused, else once its last user is done. */
  function retire(e: Entry<T>): void {
    if (e.retired) return;
    e.retired = true;
    if (e.refs === 0) finish(e);
    else draining.add(e);
  }

  /** Takes `e` out of the cache, which retires it; one already out was retired on the way. */
  function remove(e: Entry<T>): void {
    if (entries.peek(e.key) === e) entries.delete(e.key);
  }

  function sweep(): void {
    const t = now();
    const idle = [...entries.values()].filter((e) => e.refs === 0 && t - e.lastUsed >= opts.idleMs);
    for (const e of idle) remove(e);
  }

  function acquire(key: string): Entry<T> {
    // `get` makes it the most recently used; a new entry may push out the least recent one,
    // busy or not (see the module doc).
    const existing = entries.get(key);
    if (existing) {
      existing.refs++;
      return existing;
    }
    let markClosed!: () => void;
    const closed = new Promise<void>((r) => {
      markClosed = r;
    });
    const e: Entry<T> = {
      key,
      value: opts.open(key),
      refs: 1,
      lastUsed: now(),
      retired: false,
      closed,
      markClosed,
    };
    e.value.then(
      (v) => {
        e.resolved = v;
      },
      () => remove(e), // a failed open is not cached: the next `use` tries again
    );
    entries.set(key, e);
    return e;
  }

  return {
    async use(key, fn) {
      if (closing) throw new Error("vector index is closed");
      sweep();
      const e = acquire(key);
      try {
        return await fn(await e.value);
      } finally {
        e.refs--;
        e.lastUsed = now();
        if (e.retired && e.refs === 0 && draining.has(e)) finish(e);
      }
    },
    async evict(key) {
      const e = entries.peek(key);
      if (!e) return;
      remove(e);
      await e.closed;
    },
    sweep,
    openValues() {
      const all = [...entries.values(), ...draining];
      return all.flatMap((e) => (e.resolved === undefined ? [] : [e.resolved]));
    },
    close() {
      if (!closing) {
        clearInterval(timer);
        const all = [...entries.values(), ...draining];
        entries.clear();
        closing = Promise.all(all.map((e) => e.closed)).then(() => undefined);
      }
      return closing;
    },
  };
}
