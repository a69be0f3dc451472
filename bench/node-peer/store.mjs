// An in-memory adapter for node-oidc-provider that forgets an entry only when it expires,
// is destroyed, or its grant is revoked. The library's own development adapter is an LRU of
// 1000 entries: under loadgen's refresh scenario it evicted the access token that the
// userinfo and introspection scenarios use next, so the peer answered 401 to them.
// Bench-sized: nothing is persisted, and the secondary indexes are not pruned.

const entries = new Map(); // `${model}:${id}` -> { payload, expiresAt (ms) }
const keysOfGrant = new Map(); // grantId -> Set of entry keys
const sessionIdOfUid = new Map(); // Session uid -> Session id
const idOfUserCode = new Map(); // `${model}:${userCode}` -> id

function alive(key) {
  const entry = entries.get(key);
  if (!entry) return undefined;
  if (entry.expiresAt <= Date.now()) {
    entries.delete(key);
    return undefined;
  }
  return entry.payload;
}

export default class MapStore {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    entries.set(key, { payload, expiresAt });
    if (payload.grantId) {
      if (!keysOfGrant.has(payload.grantId)) keysOfGrant.set(payload.grantId, new Set());
      keysOfGrant.get(payload.grantId).add(key);
    }
    if (this.model === 'Session' && payload.uid) sessionIdOfUid.set(payload.uid, id);
    if (payload.userCode) idOfUserCode.set(`${this.model}:${payload.userCode}`, id);
  }

  async find(id) {
    return alive(this.key(id));
  }

  async findByUid(uid) {
    const id = sessionIdOfUid.get(uid);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = idOfUserCode.get(`${this.model}:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const payload = alive(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    entries.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const key of keysOfGrant.get(grantId) ?? []) entries.delete(key);
    keysOfGrant.delete(grantId);
  }
}
