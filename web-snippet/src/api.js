// The REST endpoints of switchboard the widget calls (public config, the
// guest token endpoints). Failures reject with an Error carrying the HTTP
// status and switchboard's machine-readable `code`.

export const PATHS = {
  exchange: '/api/v2/webdeployments/token/oauthcodegrantjwtexchange',
  refresh: '/api/v2/webdeployments/token/refresh',
  revoke: '/api/v2/webdeployments/token/revoke',
  start: '/api/v2/webdeployments/token/oauth/start',
  complete: '/api/v2/webdeployments/token/oauth/complete',
};

export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function api(base) {
  async function call(method, path, body, bearer) {
    const headers = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (bearer) headers.authorization = `Bearer ${bearer}`;
    let response;
    try {
      response = await fetch(base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'omit',
        cache: 'no-store',
      });
    } catch {
      throw new ApiError('switchboard cannot be reached', 0, 'network');
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      // Not JSON: a proxy's error page, say.
    }
    if (!response.ok) {
      throw new ApiError(
        (data && data.message) || `HTTP ${response.status}`,
        response.status,
        data && data.code,
      );
    }
    return data;
  }
  return {
    get: (path) => call('GET', path),
    post: (path, body) => call('POST', path, body),
    del: (path, bearer) => call('DELETE', path, undefined, bearer),
  };
}
