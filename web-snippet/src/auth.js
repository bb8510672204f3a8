// Signing the visitor in, for deployments that require it, and keeping the
// session JWT fresh.
//
// Two ways in:
// - the host page registers an auth provider that resolves the result of
//   its own authorization-code login ({code, redirectUri, codeVerifier?,
//   nonce?, iss?}, or {idToken, nonce?}); the widget posts it to the code
//   exchange;
// - otherwise the widget runs switchboard's backend-owned login in a popup:
//   oauth/start, the IdP's authorize URL in the popup, switchboard's
//   callback page posting {code, state, iss} back to this window, then
//   oauth/complete. The PKCE verifier and nonce never reach the browser.
//
// The tokens ({jwt, refreshToken}) are kept per deployment in localStorage
// so a reload and other tabs continue the session; refreshes happen under
// a Web Lock, because refresh tokens rotate and a token presented twice
// revokes the whole session.

import { PATHS, ApiError } from './api.js';

const REFRESH_BEFORE_MS = 60000;
const LOGIN_TIMEOUT_MS = 10 * 60 * 1000;

function claims(jwt) {
  try {
    return JSON.parse(atob(jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
  } catch {
    return {};
  }
}

// When the JWT expires, on this browser's clock: its lifetime (exp - iat)
// counted from when it arrived, so a clock set wrong does not make every
// token look expired (or never expiring).
export function expiresAt(tokens) {
  const { exp, iat } = claims(tokens.jwt);
  if (typeof exp !== 'number') return 0;
  if (typeof iat === 'number' && typeof tokens.receivedAt === 'number') {
    return tokens.receivedAt + (exp - iat) * 1000;
  }
  return exp * 1000;
}

export class Auth {
  // options: {rest, deploymentId, store, redirectUri, onRefreshed(jwt),
  // onLost()}
  constructor(options) {
    Object.assign(this, options);
    this.provider = null;
    this.timer = 0;
  }

  get tokens() {
    const t = this.store.get('auth');
    return t && typeof t.jwt === 'string' && typeof t.refreshToken === 'string' ? t : null;
  }

  get signedIn() {
    return !!this.tokens;
  }

  save(tokens) {
    this.store.set(
      'auth',
      tokens ? { jwt: tokens.jwt, refreshToken: tokens.refreshToken, receivedAt: Date.now() } : null,
    );
    this.schedule();
  }

  forget() {
    this.save(null);
  }

  // A session JWT valid for a while yet, refreshed when needed; null when
  // the visitor is not signed in (or no longer: the refresh was refused).
  async validJwt(force = false) {
    return this.locked(async () => {
      const tokens = this.tokens;
      if (!tokens) return null;
      // Another tab may have refreshed already: its tokens are in storage.
      if (!force && expiresAt(tokens) - Date.now() > REFRESH_BEFORE_MS) return tokens.jwt;
      try {
        const next = await this.rest.post(PATHS.refresh, {
          refreshToken: tokens.refreshToken,
          deploymentId: this.deploymentId,
        });
        this.save(next);
        return next.jwt;
      } catch (e) {
        if (e instanceof ApiError && (e.status === 401 || e.status === 404 || e.status === 400)) {
          this.forget();
          return null;
        }
        // Unreachable or busy: the JWT may still work for a moment.
        throw e;
      }
    });
  }

  locked(fn) {
    const locks = navigator.locks;
    return locks ? locks.request(`switchboard:${this.deploymentId}:refresh`, fn) : fn();
  }

  // Refreshes shortly before the JWT expires, and tells the widget.
  schedule() {
    clearTimeout(this.timer);
    const tokens = this.tokens;
    if (!tokens) return;
    const due = Math.max(5000, expiresAt(tokens) - Date.now() - REFRESH_BEFORE_MS);
    this.timer = setTimeout(async () => {
      try {
        const jwt = await this.validJwt(true);
        if (jwt) this.onRefreshed(jwt);
        else this.onLost();
      } catch {
        // Try again in a moment.
        this.timer = setTimeout(() => this.schedule(), 15000);
      }
    }, due);
  }

  async signInWithProvider() {
    const result = await this.provider();
    if (!result) throw new ApiError('sign-in was cancelled', 0, 'cancelled');
    const code = result.code || result.authCode;
    const oauth = code
      ? {
          code,
          redirectUri: result.redirectUri,
          codeVerifier: result.codeVerifier,
          nonce: result.nonce,
          maxAge: result.maxAge,
          iss: result.iss,
        }
      : { idToken: result.idToken, nonce: result.nonce };
    this.save(await this.rest.post(PATHS.exchange, { deploymentId: this.deploymentId, oauth }));
  }

  // `popup` was opened by the click that asked for the sign-in (browsers
  // block popups opened later).
  async signInWithPopup(popup) {
    if (!popup) throw new ApiError('the sign-in window was blocked: allow pop-ups for this site', 0, 'popup_blocked');
    try {
      const started = await this.rest.post(PATHS.start, {
        deploymentId: this.deploymentId,
        redirectUri: this.redirectUri,
      });
      if (popup.closed) throw new ApiError('sign-in was cancelled', 0, 'cancelled');
      popup.location.href = started.authorizeUrl;
      const answer = await this.callback(popup, started.state);
      this.save(
        await this.rest.post(PATHS.complete, {
          deploymentId: this.deploymentId,
          code: answer.code,
          state: answer.state,
          iss: answer.iss || undefined,
        }),
      );
    } finally {
      try {
        popup.close();
      } catch {
        // Already gone.
      }
    }
  }

  // The callback page's message: from our popup, from the callback's
  // origin, for our login.
  callback(popup, state) {
    const origin = new URL(this.redirectUri).origin;
    return new Promise((resolve, reject) => {
      let closedAt = 0;
      const done = (fn, value) => {
        window.removeEventListener('message', onMessage);
        clearInterval(poll);
        clearTimeout(timeout);
        fn(value);
      };
      const onMessage = (e) => {
        const data = e.data;
        if (e.origin !== origin || (e.source && e.source !== popup)) return;
        if (!data || data.type !== 'switchboard:login' || data.state !== state) return;
        if (data.error) {
          done(reject, new ApiError(data.errorDescription || data.error, 0, data.error));
        } else if (data.code) {
          done(resolve, data);
        }
      };
      window.addEventListener('message', onMessage);
      // A popup closed by the visitor: give a message posted just before
      // the close a moment to arrive.
      const poll = setInterval(() => {
        if (!popup.closed) return;
        if (!closedAt) closedAt = Date.now();
        else if (Date.now() - closedAt > 1000) {
          done(reject, new ApiError('sign-in was cancelled', 0, 'cancelled'));
        }
      }, 400);
      const timeout = setTimeout(
        () => done(reject, new ApiError('sign-in took too long', 0, 'timeout')),
        LOGIN_TIMEOUT_MS,
      );
    });
  }

  // Logs out at switchboard: the session's sockets get LogoutEvent.
  async logout() {
    let jwt = null;
    try {
      jwt = await this.validJwt();
    } catch {
      jwt = this.tokens && this.tokens.jwt;
    }
    this.forget();
    if (jwt) {
      try {
        await this.rest.del(PATHS.revoke, jwt);
      } catch {
        // Already revoked or expired: the local sign-in is gone either way.
      }
    }
  }
}
