// The console's HTTP client: same-origin requests carrying the staff
// session cookie, with the session's CSRF token on every request that
// changes something (the server refuses them with 403 `csrf` otherwise).
// Errors come back as ApiError with the server's {code, message, details}.

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code || 'http_error';
    this.details = body?.details;
  }
}

export class Api {
  constructor() {
    this.csrf = null;
    // Called when the session is over (401), so the console can ask the
    // member to sign in again.
    this.onSignedOut = () => {};
  }

  // The signed-in member (GET /auth/session), or null when not signed in.
  async session() {
    const r = await fetch('/auth/session', { credentials: 'same-origin', cache: 'no-store' });
    if (r.status === 401) return null;
    const body = await readJson(r);
    if (!r.ok) throw new ApiError(r.status, body);
    this.csrf = body.csrfToken;
    return body;
  }

  async logout() {
    await fetch('/auth/logout', {
      method: 'POST',
      credentials: 'same-origin',
      headers: this.csrf ? { 'x-csrf-token': this.csrf } : {},
    });
    this.csrf = null;
  }

  async call(method, path, body) {
    const headers = {};
    if (method !== 'GET' && this.csrf) headers['x-csrf-token'] = this.csrf;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const r = await fetch(path, {
      method,
      credentials: 'same-origin',
      cache: 'no-store',
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await readJson(r);
    if (!r.ok) {
      const error = new ApiError(r.status, data);
      if (r.status === 401) this.onSignedOut(error);
      throw error;
    }
    return data;
  }

  get(path) {
    return this.call('GET', path);
  }

  post(path, body) {
    return this.call('POST', path, body ?? {});
  }

  put(path, body) {
    return this.call('PUT', path, body);
  }

  delete(path) {
    return this.call('DELETE', path);
  }

  // Every entity of a paged list (pages of 100).
  async all(path) {
    const entities = [];
    for (let page = 1; ; page += 1) {
      const sep = path.includes('?') ? '&' : '?';
      const listing = await this.get(`${path}${sep}pageNumber=${page}&pageSize=100`);
      entities.push(...listing.entities);
      if (page >= listing.pageCount) return entities;
    }
  }
}

async function readJson(r) {
  const text = await r.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { code: 'http_error', message: `HTTP ${r.status}` };
  }
}
